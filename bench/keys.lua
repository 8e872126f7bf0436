-- wrk script: GET /api/get?key=k0 .. k9999 round-robin (the same mix is sent to nginx).
local n = 0
local count = tonumber(os.getenv("BENCH_KEYS") or "10000")

request = function()
    local path = "/api/get?key=k" .. (n % count)
    n = n + 1
    return wrk.format("GET", path)
end
