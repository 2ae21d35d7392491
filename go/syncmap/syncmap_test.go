package syncmap

import (
	"math/rand"
	"sync"
	"testing"
)

// delta runs f and returns how much each counter moved.
func delta(f func()) [numEvents]uint64 {
	before := Snapshot()
	f()
	after := Snapshot()
	var d [numEvents]uint64
	for i := range d {
		d[i] = after[i] - before[i]
	}
	return d
}

func TestStoreLoadDelete(t *testing.T) {
	var m Map
	if _, ok := m.Load(1); ok {
		t.Fatal("empty map has a key")
	}
	m.Store(1, "a")
	if v, ok := m.Load(1); !ok || v != "a" {
		t.Fatalf("Load(1) = %v, %v", v, ok)
	}
	if prev, loaded := m.Swap(1, "b"); !loaded || prev != "a" {
		t.Fatalf("Swap = %v, %v", prev, loaded)
	}
	if v, loaded := m.LoadOrStore(1, "c"); !loaded || v != "b" {
		t.Fatalf("LoadOrStore existing = %v, %v", v, loaded)
	}
	if v, loaded := m.LoadOrStore(2, "x"); loaded || v != "x" {
		t.Fatalf("LoadOrStore new = %v, %v", v, loaded)
	}
	if v, loaded := m.LoadAndDelete(1); !loaded || v != "b" {
		t.Fatalf("LoadAndDelete = %v, %v", v, loaded)
	}
	if _, ok := m.Load(1); ok {
		t.Fatal("deleted key still there")
	}
	if n := m.Len(); n != 1 {
		t.Fatalf("Len = %d", n)
	}
}

// The phases happen exactly when the design says, and the counters say so.
func TestPromotionAndRebuildCounts(t *testing.T) {
	var m Map
	// Two new keys: the first store rebuilds an empty dirty (nothing to copy).
	d := delta(func() { m.Store(1, 1); m.Store(2, 2) })
	if d[SlowStore] != 2 || d[Rebuild] != 1 || d[EntriesCopied] != 0 {
		t.Fatalf("new keys: %v", d)
	}
	// Two misses (len(dirty) = 2) promote: O(1), no copy.
	d = delta(func() { m.Load(1); m.Load(2) })
	if d[ReadMiss] != 2 || d[Promotion] != 1 || d[SlowLoad] != 2 {
		t.Fatalf("misses: %v", d)
	}
	// Now both are in the snapshot: lock-free reads and updates.
	d = delta(func() { m.Load(1); m.Store(2, 20) })
	if d[FastRead] != 1 || d[FastStore] != 1 || d[SlowLoad] != 0 || d[SlowStore] != 0 {
		t.Fatalf("fast paths: %v", d)
	}
	// The next new key rebuilds dirty by copying both live entries.
	d = delta(func() { m.Store(3, 3) })
	if d[Rebuild] != 1 || d[EntriesCopied] != 2 {
		t.Fatalf("rebuild: %v", d)
	}
	// Range promotes at once when dirty has more keys.
	d = delta(func() { m.Range(func(_, _ any) bool { return true }) })
	if d[Promotion] != 1 || d[Ranges] != 1 {
		t.Fatalf("range: %v", d)
	}
	// A deleted key is expunged by the next rebuild and not copied; storing it again revives
	// it through the slow path.
	m.Delete(1)
	d = delta(func() { m.Store(4, 4) })
	if d[EntriesCopied] != 2 {
		t.Fatalf("rebuild after delete copied %d, want 2 (keys 2 and 3)", d[EntriesCopied])
	}
	d = delta(func() { m.Store(1, 100) })
	if d[SlowStore] != 1 {
		t.Fatalf("revive: %v", d)
	}
	if v, ok := m.Load(1); !ok || v != 100 {
		t.Fatalf("revived key = %v, %v", v, ok)
	}
}

// Many goroutines against a reference map under one mutex; run under -race.
func TestConcurrentAgainstReference(t *testing.T) {
	var m Map
	var refMu sync.Mutex
	ref := map[int]int{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < 5000; i++ {
				// Each goroutine owns keys = g mod 8, so the reference stays exact.
				k := rng.Intn(64)*8 + g
				switch rng.Intn(4) {
				case 0, 1:
					m.Store(k, i)
					refMu.Lock()
					ref[k] = i
					refMu.Unlock()
				case 2:
					m.Delete(k)
					refMu.Lock()
					delete(ref, k)
					refMu.Unlock()
				default:
					v, ok := m.Load(k)
					refMu.Lock()
					want, wantOK := ref[k]
					refMu.Unlock()
					if ok != wantOK || (ok && v != want) {
						t.Errorf("Load(%d) = %v, %v; want %v, %v", k, v, ok, want, wantOK)
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	got := map[int]int{}
	m.Range(func(k, v any) bool { got[k.(int)] = v.(int); return true })
	if len(got) != len(ref) {
		t.Fatalf("%d keys, want %d", len(got), len(ref))
	}
	for k, v := range ref {
		if got[k] != v {
			t.Fatalf("key %d = %d, want %d", k, got[k], v)
		}
	}
}
