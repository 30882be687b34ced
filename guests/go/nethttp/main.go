// nethttp: an HTTP server on 127.0.0.1 (a port the kernel picks) and clients in goroutines
// talking to it over loopback TCP (needs `vmx run --net`).
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s (%s)", strings.TrimPrefix(r.URL.Path, "/hello/"), r.Method)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Len", fmt.Sprint(len(b)))
		w.Write([]byte(strings.ToUpper(string(b))))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	base := "http://" + ln.Addr().String()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lines []string
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := http.Get(fmt.Sprintf("%s/hello/%d", base, i))
			if err != nil {
				mu.Lock()
				lines = append(lines, "get error: "+err.Error())
				mu.Unlock()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			lines = append(lines, fmt.Sprintf("%d %s", resp.StatusCode, b))
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	body := strings.Repeat("payload ", 20000)
	resp, err := http.Post(base+"/echo", "text/plain", strings.NewReader(body))
	if err != nil {
		fmt.Println("post:", err)
		os.Exit(1)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println("echo", resp.StatusCode, resp.Header.Get("X-Len"), len(b), string(b[:16]))
	resp, err = http.Get(base + "/missing")
	if err == nil {
		fmt.Println("missing", resp.StatusCode)
		resp.Body.Close()
	}
	srv.Close()
	_, err = http.Get(base + "/hello/after")
	fmt.Println("after close error:", err != nil)
}
