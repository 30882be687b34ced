// fileio: file I/O from goroutines in the directory given as the first argument: create,
// write, append, read back, list, stat and remove, with results gathered in order.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fileio DIR")
		os.Exit(2)
	}
	dir, err := os.MkdirTemp(os.Args[1], "fileio-")
	if err != nil {
		fmt.Println("mkdirtemp:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	var wg sync.WaitGroup
	sums := make([]int, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := filepath.Join(dir, fmt.Sprintf("f%d.txt", i))
			data := strings.Repeat(fmt.Sprintf("line %d\n", i), 100*(i+1))
			if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
				fmt.Println("write:", err)
				return
			}
			f, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				fmt.Println("open:", err)
				return
			}
			fmt.Fprintf(f, "end %d\n", i)
			f.Close()
			back, err := os.ReadFile(name)
			if err != nil {
				fmt.Println("read:", err)
				return
			}
			sums[i] = len(back)
			if i%3 == 0 {
				os.Remove(name)
			}
		}(i)
	}
	wg.Wait()
	fmt.Println("sizes", sums)
	entries, err := os.ReadDir(dir)
	if err != nil {
		fmt.Println("readdir:", err)
		os.Exit(1)
	}
	var names []string
	for _, e := range entries {
		info, _ := e.Info()
		names = append(names, fmt.Sprintf("%s:%d", e.Name(), info.Size()))
	}
	sort.Strings(names)
	fmt.Println(strings.Join(names, " "))
	_, err = os.Stat(filepath.Join(dir, "missing"))
	fmt.Println("missing:", os.IsNotExist(err))
	_, err = os.ReadFile("/etc/hostname-not-granted")
	fmt.Println("outside error:", err != nil)
}
