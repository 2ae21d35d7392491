// Command gocache is a plain in-process cache, the kind of code nobody calls a workload: eight
// goroutines look up computed results in a sync.Map and store the ones they miss, and a
// janitor goroutine walks the cache every few milliseconds to drop expired entries.
//
//	gocache [--duration SECS]
//
// It prints one JSON line at exit: lookups, hits and the entries left.
package main

import (
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	value   uint64
	expires int64
}

type cache struct {
	m       sync.Map
	entries atomic.Int64
}

// compute stands for the expensive work the cache saves.
//
//go:noinline
func compute(key uint64) uint64 {
	x := key
	for i := uint64(0); i < 200; i++ {
		x = x*6364136223846793005 + i
	}
	return x
}

func (c *cache) get(key uint64, now int64) (uint64, bool) {
	if v, ok := c.m.Load(key); ok {
		return v.(result).value, true
	}
	v := compute(key)
	c.m.Store(key, result{value: v, expires: now + int64(2*time.Second)})
	c.entries.Add(1)
	return v, false
}

// janitor drops expired entries.
func (c *cache) janitor(stop *atomic.Bool) {
	for !stop.Load() {
		now := time.Now().UnixNano()
		c.m.Range(func(k, v any) bool {
			if v.(result).expires < now {
				c.m.Delete(k)
				c.entries.Add(-1)
			}
			return true
		})
		time.Sleep(5 * time.Millisecond)
	}
}

func main() {
	duration := flag.Float64("duration", 3, "seconds to run")
	flag.Parse()
	c := &cache{}
	var stop atomic.Bool
	var lookups, hits atomic.Uint64
	var wg sync.WaitGroup
	go c.janitor(&stop)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			// Each request asks for a recent key or a brand-new one.
			seq := uint64(w) << 40
			for !stop.Load() {
				now := time.Now().UnixNano()
				seq++
				key := seq
				if seq%4 != 0 {
					key = seq - seq%64
				}
				if _, ok := c.get(key, now); ok {
					hits.Add(1)
				}
				lookups.Add(1)
			}
		}(w)
	}
	time.Sleep(time.Duration(*duration * float64(time.Second)))
	stop.Store(true)
	wg.Wait()
	fmt.Printf("{\"lookups\": %d, \"hits\": %d, \"entries\": %d}\n", lookups.Load(), hits.Load(), c.entries.Load())
}
