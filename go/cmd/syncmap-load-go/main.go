// Command syncmap-load-go drives the Go bundled map (or, with --map, Go's sync.Map or a map
// behind a mutex; see maps.go) with the presets of the Rust
// syncmap-load, with the same flags and the same JSON at exit, and can write Go's own block
// and mutex profiles: the reference lockscope is checked against.
//
//	syncmap-load-go --preset NAME [--map syncmap|std|mutex-map|rwmutex-map] [--threads N] [--keys N] [--duration SECS]
//	                [--start-delay SECS] [--linger SECS]
//	                [--block-profile FILE] [--mutex-profile FILE]
//
// Threads are goroutines. --start-delay waits after filling the map and before working;
// --linger stays alive after printing, so a tracer attached in the delay and still attached
// in the linger sees exactly the interval the JSON counts.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"lockscope.dev/go/syncmap"
)

var presets = map[string]int{
	"read-mostly":     10_000,
	"update-existing": 10_000,
	"write-heavy":     100_000,
	"miss-storm":      1_000,
	"range-insert":    10_000,
}

type shared struct {
	m    kv
	next atomic.Uint64
	keys uint64
	stop atomic.Bool
}

// insertNew stores a brand-new key and deletes the one leaving the window, so the map keeps
// `keys` live keys while every store is of a new key.
func (s *shared) insertNew() {
	k := s.next.Add(1) - 1
	s.m.Store(int(k), int(k))
	if k >= s.keys {
		s.m.Delete(int(k - s.keys))
	}
}

type rng uint64

func (r *rng) next() uint64 {
	*r ^= *r << 13
	*r ^= *r >> 7
	*r ^= *r << 17
	return uint64(*r)
}

func (s *shared) randomLive(r *rng) int {
	next := s.next.Load()
	n := s.keys
	if next < n {
		n = next
	}
	return int(next - 1 - r.next()%n)
}

func (s *shared) randomOld(r *rng) int {
	next := s.next.Load()
	oldest := uint64(0)
	if next > s.keys {
		oldest = next - s.keys
	}
	half := s.keys / 2
	if half == 0 {
		half = 1
	}
	return int(oldest + r.next()%half)
}

var sink atomic.Uint64

//go:noinline
func work(seed uint64) uint64 {
	x := seed
	for i := uint64(0); i < 64; i++ {
		x = x*6364136223846793005 + i
	}
	return x
}

// worker is one goroutine's loop; it returns its operation count.
func worker(preset string, index int, s *shared) uint64 {
	r := rng(0x9E3779B97F4A7C15 ^ (uint64(index)+1)*0x2545F4914F6CDD1D)
	var ops uint64
	for !s.stop.Load() {
		switch preset {
		case "read-mostly":
			k := s.randomLive(&r)
			if r.next()%100 == 0 {
				s.m.Store(k, int(r.next()>>1))
			} else {
				s.m.Load(k)
			}
		case "update-existing":
			k := s.randomLive(&r)
			if v, ok := s.m.Load(k); ok {
				s.m.Store(k, v.(int)+1)
			}
		case "write-heavy":
			if index == 0 {
				s.insertNew()
				sink.Add(work(r.next()))
			} else if r.next()%64 == 0 {
				s.m.Load(int(s.next.Load() - 1))
			} else {
				s.m.Load(s.randomOld(&r))
			}
		case "miss-storm":
			if r.next()%8 == 0 {
				s.insertNew()
			} else {
				s.m.Load(int(s.next.Load() - 1 - r.next()%4))
			}
		case "range-insert":
			if index == 0 {
				sum := 0
				s.m.Range(func(_, v any) bool { sum += v.(int); return true })
				sink.Add(uint64(sum))
			} else {
				s.insertNew()
			}
		}
		ops++
	}
	return ops
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup(name).WriteTo(f, 0)
}

func main() {
	mapName := flag.String("map", "syncmap", strings.Join(mapNames, "|"))
	preset := flag.String("preset", "", "read-mostly|update-existing|write-heavy|miss-storm|range-insert")
	threads := flag.Int("threads", 4, "worker goroutines")
	keys := flag.Uint64("keys", 0, "live keys (default: the preset's)")
	duration := flag.Float64("duration", 5, "seconds of work")
	startDelay := flag.Float64("start-delay", 0, "seconds to wait after filling, before working")
	linger := flag.Float64("linger", 0, "seconds to stay alive after printing")
	blockProfile := flag.String("block-profile", "", "write Go's block profile here at exit")
	mutexProfile := flag.String("mutex-profile", "", "write Go's mutex profile here at exit")
	groundTruth := flag.String("ground-truth", "", "write the map's log of blocked waits and phase runs here at exit (a build with -tags groundtruth)")
	flag.Parse()
	if *groundTruth != "" && !syncmap.GroundTruth {
		fmt.Fprintf(os.Stderr, "syncmap-load-go: --ground-truth needs a build with -tags groundtruth\n")
		os.Exit(2)
	}
	defKeys, ok := presets[*preset]
	if !ok || *threads < 1 || *duration < 0 {
		fmt.Fprintf(os.Stderr, "syncmap-load-go: --preset is one of read-mostly, update-existing, write-heavy, miss-storm, range-insert; --threads > 0\n")
		os.Exit(2)
	}
	if *keys == 0 {
		*keys = uint64(defKeys)
	}
	m := newMap(*mapName)
	if m == nil {
		fmt.Fprintf(os.Stderr, "syncmap-load-go: --map is one of %s\n", strings.Join(mapNames, ", "))
		os.Exit(2)
	}
	s := &shared{m: m, keys: *keys}
	// Fill and promote, so the run starts from a full read snapshot.
	for i := uint64(0); i < *keys; i++ {
		s.insertNew()
	}
	s.m.Range(func(_, _ any) bool { return true })
	time.Sleep(time.Duration(*startDelay * float64(time.Second)))
	if *blockProfile != "" {
		runtime.SetBlockProfileRate(1)
	}
	if *mutexProfile != "" {
		runtime.SetMutexProfileFraction(1)
	}
	names, before := snapshot(s.m)
	fmt.Fprintf(os.Stderr, "syncmap-load-go pid %d map %s preset %s threads %d keys %d\n",
		os.Getpid(), *mapName, *preset, *threads, *keys)
	start := time.Now()
	var wg sync.WaitGroup
	var total atomic.Uint64
	for i := 0; i < *threads; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			total.Add(worker(*preset, i, s))
		}(i)
	}
	time.Sleep(time.Duration(*duration * float64(time.Second)))
	s.stop.Store(true)
	wg.Wait()
	secs := time.Since(start).Seconds()
	_, after := snapshot(s.m)
	if *groundTruth != "" {
		if err := writeGroundTruth(*groundTruth); err != nil {
			fmt.Fprintf(os.Stderr, "syncmap-load-go: --ground-truth: %v\n", err)
			os.Exit(1)
		}
	}
	for name, path := range map[string]string{"block": *blockProfile, "mutex": *mutexProfile} {
		if path != "" {
			if err := writeProfile(name, path); err != nil {
				fmt.Fprintf(os.Stderr, "syncmap-load-go: %s profile: %v\n", name, err)
				os.Exit(1)
			}
		}
	}
	ops := total.Load()
	fmt.Printf("{\"map\": %q, \"preset\": %q, \"threads\": %d, \"keys\": %d, \"seconds\": %.3f, \"ops\": %d, \"ops_per_sec\": %.0f, \"counters\": %s, \"counters_since_start\": %s}\n",
		*mapName, *preset, *threads, *keys, secs, ops, float64(ops)/secs,
		jsonCounters(names, after, before), jsonCounters(names, after, nil))
	time.Sleep(time.Duration(*linger * float64(time.Second)))
}

func writeGroundTruth(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if err := syncmap.DumpGroundTruth(w); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
