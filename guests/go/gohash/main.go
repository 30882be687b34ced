// gohash: SHA-256 and CRC-32 (IEEE) of deterministic pseudo-random data, a benchmark row of
// `cargo xtask bench-real`. Usage: gohash [MEGABYTES] (default 64). The data is generated in
// memory (xorshift64*), hashed in 1 MiB pieces, and both digests are printed.
package main

import (
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"os"
	"strconv"
)

func main() {
	mb := 64
	if len(os.Args) > 1 {
		n, err := strconv.Atoi(os.Args[1])
		if err != nil || n < 0 {
			fmt.Fprintln(os.Stderr, "usage: gohash [MEGABYTES]")
			os.Exit(2)
		}
		mb = n
	}
	buf := make([]byte, 1<<20)
	s := uint64(0x9e3779b97f4a7c15)
	h := sha256.New()
	c := crc32.NewIEEE()
	for i := 0; i < mb; i++ {
		for j := 0; j < len(buf); j += 8 {
			s ^= s >> 12
			s ^= s << 25
			s ^= s >> 27
			v := s * 0x2545f4914f6cdd1d
			for k := 0; k < 8; k++ {
				buf[j+k] = byte(v >> (8 * k))
			}
		}
		h.Write(buf)
		c.Write(buf)
	}
	fmt.Printf("%d MiB sha256=%x crc32=%08x\n", mb, h.Sum(nil), c.Sum32())
}
