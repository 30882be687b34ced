// hotloop: goroutines spinning in call-free loops while the main goroutine forces garbage
// collections. A collection must stop every goroutine; one in a loop without calls can only
// be stopped by asynchronous preemption (the runtime's tgkill(SIGURG) to its thread), so this
// hangs where preemption signals are not delivered.
package main

import (
	"fmt"
	"runtime"
	"sync/atomic"
)

var stop int32

func spin(out *uint64) {
	var x uint64 = 1
	for atomic.LoadInt32(&stop) == 0 {
		for i := 0; i < 1000000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	*out = x
}

func main() {
	outs := make([]uint64, 3)
	for i := range outs {
		go spin(&outs[i])
	}
	var ms runtime.MemStats
	for i := 0; i < 5; i++ {
		_ = make([]byte, 1<<20)
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	atomic.StoreInt32(&stop, 1)
	fmt.Println("collections at least 5:", ms.NumGC >= 5)
}
