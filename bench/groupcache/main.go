// groupcache-bench: golang/groupcache (Debian's package, GOPATH mode) behind the HTTP API shape the benchmarks drive.
//
// One process is one groupcache node: its HTTP listener serves the API and the HTTPPool peer protocol
// (/_groupcache/) on the same address, as groupcache's own examples do. The group "scores" loads from an
// in-process fake origin that answers the same bytes the other systems are given:
//
//	Tom, Jack, Sam    springcache's demo store (630, 589, 567)
//	k<N>              "630"            (the bench's 10,000 small keys)
//	v<SIZE>           SIZE bytes 'a'..'z' repeating (the large-value scenarios; bench.py makes the same bytes)
//
// Routes: GET /api/get?key=K -> 200 "value=V\n"; GET /v1/cache/scores/K -> the raw value; 404 for an unknown key;
// GET /api/stats -> the group's counters as JSON (so the bench can check peer loads and hot copies happened).
//
//	groupcache-bench -listen 127.0.0.1:PORT [-peers http://127.0.0.1:P1,http://127.0.0.1:P2] [-cache-bytes N]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net/http"
	"strconv"
	"strings"

	"github.com/golang/groupcache"
)

var demo = map[string]string{"Tom": "630", "Jack": "589", "Sam": "567"}

// largest value the fake origin makes; the bench uses up to 1 MiB.
const maxValueBytes = 64 << 20

var errNotFound = errors.New("not found")

func origin(key string) ([]byte, error) {
	if v, ok := demo[key]; ok {
		return []byte(v), nil
	}
	if len(key) > 1 && key[0] == 'k' {
		if _, err := strconv.ParseUint(key[1:], 10, 64); err == nil {
			return []byte("630"), nil
		}
	}
	if len(key) > 1 && key[0] == 'v' {
		if n, err := strconv.Atoi(key[1:]); err == nil && n > 0 && n <= maxValueBytes {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte('a' + i%26)
			}
			return b, nil
		}
	}
	return nil, errNotFound
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9999", "address for the API and the peer protocol")
	peers := flag.String("peers", "", "comma-separated peer base URLs, this node's own included (empty: single node)")
	cacheBytes := flag.Int64("cache-bytes", 256<<20, "groupcache's cacheBytes for the group (main + hot)")
	flag.Parse()

	self := "http://" + *listen
	pool := groupcache.NewHTTPPool(self) // registers /_groupcache/ on http.DefaultServeMux
	if *peers != "" {
		pool.Set(strings.Split(*peers, ",")...)
	} else {
		pool.Set(self)
	}
	group := groupcache.NewGroup("scores", *cacheBytes, groupcache.GetterFunc(
		func(_ context.Context, key string, dest groupcache.Sink) error {
			v, err := origin(key)
			if err != nil {
				return err
			}
			return dest.SetBytes(v)
		}))

	get := func(w http.ResponseWriter, r *http.Request, key string, prefix, suffix string) {
		var v groupcache.ByteView
		if err := group.Get(r.Context(), key, groupcache.ByteViewSink(&v)); err != nil {
			http.Error(w, "key \""+key+"\" not found in group \"scores\"", http.StatusNotFound)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.Itoa(len(prefix)+v.Len()+len(suffix)))
		w.WriteHeader(http.StatusOK)
		if prefix != "" {
			w.Write([]byte(prefix))
		}
		v.WriteTo(w)
		if suffix != "" {
			w.Write([]byte(suffix))
		}
	}
	http.HandleFunc("/api/get", func(w http.ResponseWriter, r *http.Request) {
		get(w, r, r.URL.Query().Get("key"), "value=", "\n")
	})
	http.HandleFunc("/v1/cache/scores/", func(w http.ResponseWriter, r *http.Request) {
		get(w, r, strings.TrimPrefix(r.URL.Path, "/v1/cache/scores/"), "", "")
	})
	http.HandleFunc("/api/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]interface{}{
			"stats": group.Stats,
			"main":  group.CacheStats(groupcache.MainCache),
			"hot":   group.CacheStats(groupcache.HotCache),
		})
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}
