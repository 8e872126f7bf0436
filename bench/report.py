"""The benchmark report: every round's points, a side-by-side table with ratios, and SVG charts.

Rows are dicts with scenario, conns, system, round, rps, p50, p99 (ms), cpu_us (server CPU µs per request) and
errors. The charts are plain SVG written here (no package): one panel per scenario and connection count, one
column per system, a dot for each round and a bar at the mean, so the spread between rounds shows.
"""
import math
import statistics
from xml.sax.saxutils import escape

# One colour per system, in the order systems are listed; more systems reuse the palette.
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
PANELS_PER_ROW = 4
PANEL_W, PANEL_H = 230, 210


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def groups(rows):
    """(scenario, conns) in the order they were run."""
    return list(dict.fromkeys((r["scenario"], r["conns"]) for r in rows))


def systems_of(rows):
    return list(dict.fromkeys(r["system"] for r in rows))


def mean(rows, scenario, conns, system, field):
    vals = [r[field] for r in rows if r["scenario"] == scenario and r["conns"] == conns
            and r["system"] == system and r[field] is not None]
    return statistics.mean(vals) if vals else None


def ratio(a, b):
    return None if a is None or not b else a / b


def runs_table(rows):
    lines = ["| scenario | conns | system | round | requests/s | p50 ms | p99 ms | CPU µs/req | errors |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append("| %s | %d | %s | %d | %.0f | %s | %s | %.2f | %d |" % (
            r["scenario"], r["conns"], r["system"], r["round"], r["rps"], fmt(r["p50"], ".3f"),
            fmt(r["p99"], ".3f"), r["cpu_us"], r["errors"]))
    return lines


def side_by_side(rows, baselines):
    """Mean over rounds per system, and its ratios to each baseline system run in the same scenario."""
    head = "| scenario | conns | system | requests/s | CPU µs/req | p99 ms |"
    align = "|---|---:|---|---:|---:|---:|"
    for b in baselines:
        head += " rps ÷ %s | CPU ÷ %s | p99 ÷ %s |" % (b, b, b)
        align += "---:|---:|---:|"
    lines = [head, align]
    for scenario, conns in groups(rows):
        present = [s for s in systems_of(rows) if mean(rows, scenario, conns, s, "rps") is not None]
        for s in present:
            rps, cpu, p99 = (mean(rows, scenario, conns, s, f) for f in ("rps", "cpu_us", "p99"))
            line = "| %s | %d | %s | %.0f | %.2f | %s |" % (scenario, conns, s, rps, cpu, fmt(p99, ".3f"))
            for b in baselines:
                if b in present:
                    line += " %s | %s | %s |" % tuple(
                        fmt(ratio(v, mean(rows, scenario, conns, b, f)), ".2f")
                        for v, f in ((rps, "rps"), (cpu, "cpu_us"), (p99, "p99")))
                else:
                    line += " - | - | - |"
            lines.append(line)
    return lines


def nice_max(v):
    """The smallest 1, 2, 2.5 or 5 × 10^k at or above v (the top of a panel's axis)."""
    if v <= 0:
        return 1.0
    k = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * k >= v:
            return m * k
    return 10 * k


def short(v):
    if v >= 1e6:
        return "%gM" % round(v / 1e6, 2)
    if v >= 1e3:
        return "%gk" % round(v / 1e3, 2)
    return "%g" % round(v, 2)


def svg_chart(rows, field, title, subtitle, unit):
    """Panels of `field` per (scenario, conns): a dot per round, a bar at the mean, y axis from 0."""
    systems = systems_of(rows)
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(systems)}
    panels = groups(rows)
    cols = min(PANELS_PER_ROW, max(1, len(panels)))
    n_rows = (len(panels) + cols - 1) // cols
    legend_h = 40 + 18 * ((len(systems) + 2) // 3)
    # Wide enough for the title too (about 8.5 px per character of 14 px bold sans).
    width, height = max(cols * PANEL_W + 20, 20 + int(8.5 * len(title))), legend_h + n_rows * PANEL_H + 10
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="sans-serif" font-size="11">' % (width, height, width, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="16" font-size="14" font-weight="bold">%s</text>' % escape(title),
           '<text x="10" y="32" fill="#555">%s</text>' % escape(subtitle)]
    for i, s in enumerate(systems):
        x, y = 10 + (i % 3) * 230, 52 + 18 * (i // 3)
        out.append('<circle cx="%d" cy="%d" r="5" fill="%s"/><text x="%d" y="%d">%s</text>'
                   % (x + 5, y - 4, colour[s], x + 14, y, escape(s)))
    for idx, (scenario, conns) in enumerate(panels):
        px = 10 + (idx % cols) * PANEL_W
        py = legend_h + (idx // cols) * PANEL_H
        left, top, plot_w, plot_h = px + 44, py + 28, PANEL_W - 60, PANEL_H - 60
        present = [s for s in systems if any(r["system"] == s and r["scenario"] == scenario and r["conns"] == conns
                                             for r in rows)]
        vals = [r[field] for r in rows if r["scenario"] == scenario and r["conns"] == conns and r[field] is not None]
        top_v = nice_max(max(vals) if vals else 1)
        out.append('<text x="%d" y="%d" font-weight="bold">%s, %d conns</text>'
                   % (px + 4, py + 14, escape(scenario), conns))
        out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>'
                   % (left, top, plot_w, plot_h))
        for t in range(5):
            v = top_v * t / 4
            y = top + plot_h - plot_h * t / 4
            out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>'
                       % (left + 1, y, left + plot_w - 1, y))
            out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (left - 4, y + 4, short(v)))
        slot = plot_w / max(1, len(present))
        for j, s in enumerate(present):
            cx = left + slot * (j + 0.5)
            pts = [r[field] for r in rows if r["system"] == s and r["scenario"] == scenario
                   and r["conns"] == conns and r[field] is not None]
            if not pts:
                continue
            m = statistics.mean(pts)
            ym = top + plot_h - plot_h * m / top_v
            out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>'
                       % (cx - slot * 0.3, ym, cx + slot * 0.3, ym, colour[s]))
            for k, v in enumerate(pts):
                # Rounds spread sideways a little so equal values stay visible as separate dots.
                dx = (k - (len(pts) - 1) / 2) * min(6, slot * 0.5 / max(1, len(pts)))
                y = top + plot_h - plot_h * v / top_v
                out.append('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s" fill-opacity="0.75">'
                           '<title>%s round %d: %s %s</title></circle>'
                           % (cx + dx, y, colour[s], escape(s), k + 1, short(v), escape(unit)))
        out.append('<text x="%d" y="%d" font-size="9" fill="#555">%s</text>' % (left, top - 4, escape(unit)))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write(stem, title, preamble, rows, baselines, extra=(), closing=()):
    """Writes stem.md, stem-rps.svg and stem-cpu.svg; returns the Markdown text."""
    name = stem.rsplit("/", 1)[-1]
    with open(stem + "-rps.svg", "w") as f:
        f.write(svg_chart(rows, "rps", title, "requests/s; a dot per round, a bar at the mean", "requests/s"))
    with open(stem + "-cpu.svg", "w") as f:
        f.write(svg_chart(rows, "cpu_us", title, "server CPU µs per request; a dot per round, a bar at the mean",
                          "CPU µs/req"))
    lines = ["# " + title, ""] + ["- " + p for p in preamble] + [""]
    lines += ["## Side by side (mean over rounds)", ""] + side_by_side(rows, baselines) + [""]
    lines += ["![requests/s](%s-rps.svg)" % name, "", "![CPU µs per request](%s-cpu.svg)" % name, ""]
    for section in extra:
        lines += list(section) + [""]
    lines += ["## Every round", ""] + runs_table(rows) + [""]
    if closing:
        lines += ["## Closing note", ""] + list(closing) + [""]
    text = "\n".join(lines)
    with open(stem + ".md", "w") as f:
        f.write(text)
    return text
