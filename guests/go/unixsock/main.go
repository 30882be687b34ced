// unixsock: unix stream sockets bound to a path in the directory given as the first
// argument, and to an abstract name; an echo server with one goroutine per connection.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func(c net.Conn) {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				fmt.Fprint(c, strings.ToUpper(line))
			}
		}(c)
	}
}

func clients(network, addr string) []string {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var out []string
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.Dial(network, addr)
			if err != nil {
				mu.Lock()
				out = append(out, "dial error: "+err.Error())
				mu.Unlock()
				return
			}
			defer c.Close()
			r := bufio.NewReader(c)
			for j := 0; j < 3; j++ {
				fmt.Fprintf(c, "client %d line %d\n", i, j)
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				mu.Lock()
				out = append(out, strings.TrimSpace(l))
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	sort.Strings(out)
	return out
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: unixsock DIR")
		os.Exit(2)
	}
	path := filepath.Join(os.Args[1], "echo.sock")
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	go serve(ln)
	for _, l := range clients("unix", path) {
		fmt.Println("path:", l)
	}
	fmt.Println("local name is the path:", ln.Addr().String() == path)
	ln.Close()
	_, err = os.Stat(path)
	fmt.Println("socket file removed on close:", os.IsNotExist(err))

	aln, err := net.Listen("unix", "@vmx-test-abstract")
	if err != nil {
		fmt.Println("listen abstract:", err)
		os.Exit(1)
	}
	go serve(aln)
	for _, l := range clients("unix", "@vmx-test-abstract")[:3] {
		fmt.Println("abstract:", l)
	}
	fmt.Println("abstract name:", aln.Addr().String())
	aln.Close()
	_, err = net.Dial("unix", "@vmx-test-abstract")
	fmt.Println("dial after close fails:", err != nil)
	_, err = net.Dial("tcp", "127.0.0.1:1")
	fmt.Println("tcp dial error:", err != nil)
}
