package main

// The maps --map chooses between: the bundled map (syncmap), Go's standard library sync.Map
// (std), and a plain map behind a sync.Mutex (mutex-map) or a sync.RWMutex (rwmutex-map).
// Every preset runs unchanged on each, so they can be compared side by side.

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"lockscope.dev/go/syncmap"
)

// kv is what the presets need of a map.
type kv interface {
	Load(key any) (any, bool)
	Store(key, value any)
	Delete(key any)
	Range(f func(key, value any) bool)
}

// mapNames are the --map choices, in the order the usage message lists them.
var mapNames = []string{"syncmap", "std", "mutex-map", "rwmutex-map"}

// newMap returns the map named by --map, or nil for an unknown name.
func newMap(name string) kv {
	switch name {
	case "syncmap":
		return &syncmap.Map{}
	case "std":
		return &stdMap{}
	case "mutex-map":
		return &mutexMap{m: map[any]any{}}
	case "rwmutex-map":
		return &rwMutexMap{m: map[any]any{}}
	}
	return nil
}

// stdMap is the standard library's sync.Map, counting its own dirty rebuilds from outside.
//
// sync.Map has no counters. A rebuild (dirtyLocked, Go ≤ 1.23) is the only thing that gives
// m.dirty a new map: a promotion sets it to nil, and stores of new keys then fill the map the
// last rebuild made. So after every Store the wrapper looks at the dirty pointer (its field
// offset from reflect, not a hand-copied layout). When it is non-nil and differs from the
// last one counted, the wrapper takes the map's own mutex (sync.Map's first field), reads the
// pointer again and counts it if it is still new: under the mutex the pointers are seen in
// the order the map made them, so a goroutine holding a stale pointer never counts twice, and
// the mutex is taken about once per rebuild. A rebuild is missed only if a promotion (which
// needs len(dirty) locked misses) happens between the Store that rebuilt and that look.
// The first Store into an empty map is a rebuild too (it copies nothing) and is counted.
type stdMap struct {
	sync.Map
	seen     atomic.Uintptr // the last dirty map counted
	rebuilds atomic.Uint64
}

var dirtyOffset = func() uintptr {
	f, ok := reflect.TypeOf(sync.Map{}).FieldByName("dirty")
	if !ok {
		// Go 1.24's hash-trie sync.Map has no dirty map and no rebuilds.
		return ^uintptr(0)
	}
	return f.Offset
}()

func (m *stdMap) dirty() uintptr {
	return atomic.LoadUintptr((*uintptr)(unsafe.Add(unsafe.Pointer(&m.Map), dirtyOffset)))
}

func (m *stdMap) Store(key, value any) {
	m.Map.Store(key, value)
	if dirtyOffset == ^uintptr(0) {
		return
	}
	if p := m.dirty(); p == 0 || p == m.seen.Load() {
		return
	}
	mu := (*sync.Mutex)(unsafe.Pointer(&m.Map))
	mu.Lock()
	if p := m.dirty(); p != 0 && p != m.seen.Load() {
		m.seen.Store(p)
		m.rebuilds.Add(1)
	}
	mu.Unlock()
}

type mutexMap struct {
	mu sync.Mutex
	m  map[any]any
}

func (m *mutexMap) Load(key any) (any, bool) {
	m.mu.Lock()
	v, ok := m.m[key]
	m.mu.Unlock()
	return v, ok
}

func (m *mutexMap) Store(key, value any) {
	m.mu.Lock()
	m.m[key] = value
	m.mu.Unlock()
}

func (m *mutexMap) Delete(key any) {
	m.mu.Lock()
	delete(m.m, key)
	m.mu.Unlock()
}

func (m *mutexMap) Range(f func(key, value any) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range m.m {
		if !f(k, v) {
			return
		}
	}
}

type rwMutexMap struct {
	mu sync.RWMutex
	m  map[any]any
}

func (m *rwMutexMap) Load(key any) (any, bool) {
	m.mu.RLock()
	v, ok := m.m[key]
	m.mu.RUnlock()
	return v, ok
}

func (m *rwMutexMap) Store(key, value any) {
	m.mu.Lock()
	m.m[key] = value
	m.mu.Unlock()
}

func (m *rwMutexMap) Delete(key any) {
	m.mu.Lock()
	delete(m.m, key)
	m.mu.Unlock()
}

func (m *rwMutexMap) Range(f func(key, value any) bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for k, v := range m.m {
		if !f(k, v) {
			return
		}
	}
}

// snapshot is the map's own counts now, by name: the bundled map's event counters, the
// stdlib map's rebuilds (all it can count from outside), nothing for the others.
func snapshot(m kv) ([]string, []uint64) {
	switch m := m.(type) {
	case *syncmap.Map:
		c := syncmap.Snapshot()
		return syncmap.Names[:], c[:]
	case *stdMap:
		return []string{"rebuilds"}, []uint64{m.rebuilds.Load()}
	}
	return nil, nil
}

// jsonCounters writes counts as a JSON object, `after - before` when before is given.
func jsonCounters(names []string, after, before []uint64) string {
	parts := make([]string, len(names))
	for i, n := range names {
		v := after[i]
		if before != nil {
			v -= before[i]
		}
		parts[i] = fmt.Sprintf("%q: %d", n, v)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
