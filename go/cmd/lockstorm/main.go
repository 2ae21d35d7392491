// Command lockstorm makes goroutines wait on locks in the ways lockscope's Go version matrix
// checks, and writes Go's own block profile of the run for comparison:
//
//	-mode mutex    goroutines take one sync.Mutex in lockSite
//	-mode rwmutex  writers in writeSite and readers in readSite share one sync.RWMutex
//	-mode maphot   goroutines replace 4 hot keys of a sync.Map (Store) in storeHot; with
//	               -keys N the map first gets N other keys, so the hot ones sit deep in
//	               Go 1.24+'s hash trie instead of in its root node
//
// It prints one JSON line with what it did, then stays -linger long (so a tracer that
// stops first can still read its memory).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

var (
	mu      sync.Mutex
	rw      sync.RWMutex
	shared  int
	hot     sync.Map
	spinFor = 20 * time.Microsecond
)

func spin(d time.Duration) {
	for t := time.Now(); time.Since(t) < d; {
	}
}

//go:noinline
func lockSite() {
	mu.Lock()
	shared++
	spin(spinFor)
	mu.Unlock()
}

//go:noinline
func writeSite() {
	rw.Lock()
	shared++
	spin(spinFor)
	rw.Unlock()
}

//go:noinline
func readSite() int {
	rw.RLock()
	v := shared
	spin(spinFor / 4)
	rw.RUnlock()
	return v
}

//go:noinline
func storeHot(i int) {
	hot.Store(i%4, i)
}

func main() {
	mode := flag.String("mode", "mutex", "mutex, rwmutex or maphot")
	goroutines := flag.Int("goroutines", 16, "goroutines")
	duration := flag.Duration("duration", 2*time.Second, "how long")
	block := flag.String("blockprofile", "", "write Go's block profile here")
	keys := flag.Int("keys", 0, "maphot: keys stored before the run (besides the 4 hot ones)")
	linger := flag.Duration("linger", 0, "stay this long after the run")
	flag.Parse()
	for k := 0; k < *keys; k++ {
		hot.Store(fmt.Sprintf("cold-%d", k), k)
	}
	if *block != "" {
		runtime.SetBlockProfileRate(1)
	}
	var ops atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(*duration)
	for g := 0; g < *goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				switch *mode {
				case "mutex":
					lockSite()
				case "rwmutex":
					if g%4 == 0 {
						writeSite()
					} else {
						readSite()
					}
				case "maphot":
					storeHot(g*1_000_003 + i)
				default:
					fmt.Fprintf(os.Stderr, "lockstorm: unknown -mode %q\n", *mode)
					os.Exit(2)
				}
				ops.Add(1)
			}
		}(g)
	}
	wg.Wait()
	if *block != "" {
		f, err := os.Create(*block)
		if err != nil {
			fmt.Fprintln(os.Stderr, "lockstorm:", err)
			os.Exit(1)
		}
		if err := pprof.Lookup("block").WriteTo(f, 0); err != nil {
			fmt.Fprintln(os.Stderr, "lockstorm:", err)
			os.Exit(1)
		}
		f.Close()
	}
	out, _ := json.Marshal(map[string]any{"mode": *mode, "ops": ops.Load(), "go": runtime.Version()})
	fmt.Println(string(out))
	time.Sleep(*linger)
}
