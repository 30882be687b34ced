// primesieve: the concurrent prime sieve (a chain of filtering goroutines connected by
// unbuffered channels), a benchmark row of `cargo xtask bench-real`. Usage: primesieve [N]
// (default 3000): prints the N-th prime and the sum of the first N primes.
package main

import (
	"fmt"
	"os"
	"strconv"
)

func generate(ch chan<- int) {
	for i := 2; ; i++ {
		ch <- i
	}
}

func filter(in <-chan int, out chan<- int, prime int) {
	for {
		i := <-in
		if i%prime != 0 {
			out <- i
		}
	}
}

func main() {
	n := 3000
	if len(os.Args) > 1 {
		v, err := strconv.Atoi(os.Args[1])
		if err != nil || v < 1 {
			fmt.Fprintln(os.Stderr, "usage: primesieve [N]")
			os.Exit(2)
		}
		n = v
	}
	ch := make(chan int)
	go generate(ch)
	sum, p := 0, 0
	for i := 0; i < n; i++ {
		p = <-ch
		sum += p
		ch1 := make(chan int)
		go filter(ch, ch1, p)
		ch = ch1
	}
	fmt.Printf("prime %d = %d, sum = %d\n", n, p, sum)
}
