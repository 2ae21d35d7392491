// Package syncmap is lockscope's bundled map in Go: the classic read-mostly design (Go's
// sync.Map before Go 1.24), written for this project with the standard library only.
//
// An atomically loaded read-only snapshot serves lock-free reads. A dirty map under a mutex
// takes new keys. Misses are counted, and when misses >= len(dirty) the dirty map is promoted
// to be the snapshot (an O(1) swap). The first new-key store after a promotion rebuilds dirty
// by copying every live entry of the snapshot (O(n), under the lock).
//
// The slow-path phases are separate, never-inlined methods with stable names (loadMiss,
// missLocked, promote, rebuildDirty, slowStore, slowDelete, rangePromote), so a tracer can
// probe them by symbol; every operation is counted in SYNCMAP_STATS.
package syncmap

import (
	"sync"
	"sync/atomic"
)

// Map is safe for concurrent use. The zero Map is empty and ready.
type Map struct {
	mu sync.Mutex
	// read is the snapshot; readers load it without mu.
	read atomic.Pointer[readOnly]
	// dirty holds every live key of read plus new ones, when not nil. Guarded by mu.
	dirty  map[any]*entry
	misses int
}

type readOnly struct {
	m map[any]*entry
	// amended: dirty has keys that m lacks.
	amended bool
}

// expunged marks an entry deleted and absent from dirty.
var expunged = new(any)

// entry is shared by read and dirty. p is nil when deleted, expunged when deleted and left
// out of dirty, else the value.
type entry struct {
	p atomic.Pointer[any]
}

func newEntry(v any) *entry {
	e := &entry{}
	e.p.Store(&v)
	return e
}

func (m *Map) loadRead() readOnly {
	if p := m.read.Load(); p != nil {
		return *p
	}
	return readOnly{}
}

func (e *entry) load() (any, bool) {
	p := e.p.Load()
	if p == nil || p == expunged {
		return nil, false
	}
	return *p, true
}

// Load returns the value for key. Lock-free when key is in the snapshot.
func (m *Map) Load(key any) (value any, ok bool) {
	read := m.loadRead()
	if e, hit := read.m[key]; hit {
		count(key, FastRead)
		return e.load()
	}
	if !read.amended {
		count(key, FastRead)
		return nil, false
	}
	return m.loadMiss(key)
}

// loadMiss is the phase of a load that missed the snapshot while dirty has more keys.
//
//go:noinline
func (m *Map) loadMiss(key any) (any, bool) {
	if !gtTryLock(&m.mu) {
		t := gtNow()
		m.mu.Lock()
		gtWaited(t)
	}
	count(key, SlowLoad)
	e := m.lookupLocked(key, false)
	m.mu.Unlock()
	if e == nil {
		return nil, false
	}
	return e.load()
}

// lookupLocked finds key's entry with mu held: the snapshot again (a promotion may have
// happened while waiting), else dirty (removing it there for a delete), counting a miss
// toward promotion whether or not dirty had it.
func (m *Map) lookupLocked(key any, remove bool) *entry {
	read := m.loadRead()
	if e, hit := read.m[key]; hit {
		return e
	}
	if !read.amended {
		return nil
	}
	e := m.dirty[key]
	if remove {
		delete(m.dirty, key)
	}
	m.missLocked(key)
	return e
}

// missLocked counts one miss toward promotion.
//
//go:noinline
func (m *Map) missLocked(key any) {
	count(key, ReadMiss)
	m.misses++
	if m.misses >= len(m.dirty) {
		m.promote(key)
	}
}

// promote makes dirty the snapshot: O(1), nothing is copied.
//
//go:noinline
func (m *Map) promote(key any) {
	t := gtNow()
	m.read.Store(&readOnly{m: m.dirty})
	m.dirty = nil
	m.misses = 0
	count(key, Promotion)
	gtPhase("promote", t)
}

// rebuildDirty copies every live entry of the snapshot into a new dirty map (O(n) under the
// lock), expunging deleted ones. Called only when dirty is nil; returns the entries copied.
//
//go:noinline
func (m *Map) rebuildDirty(key any) int {
	t := gtNow()
	read := m.loadRead()
	m.dirty = make(map[any]*entry, len(read.m))
	for k, e := range read.m {
		if !e.tryExpungeLocked() {
			m.dirty[k] = e
		}
	}
	copied := len(m.dirty)
	count(key, Rebuild)
	add(key, EntriesCopied, uint64(copied))
	gtPhase("rebuild_dirty", t)
	return copied
}

func (e *entry) tryExpungeLocked() bool {
	p := e.p.Load()
	for p == nil {
		if e.p.CompareAndSwap(nil, expunged) {
			return true
		}
		p = e.p.Load()
	}
	return p == expunged
}

func (e *entry) unexpungeLocked() bool { return e.p.CompareAndSwap(expunged, nil) }

// trySwap replaces the value unless the entry is expunged.
func (e *entry) trySwap(v *any) (*any, bool) {
	for {
		p := e.p.Load()
		if p == expunged {
			return nil, false
		}
		if e.p.CompareAndSwap(p, v) {
			return p, true
		}
	}
}

// Store sets the value for key.
func (m *Map) Store(key, value any) { m.Swap(key, value) }

// Swap sets the value for key and returns the previous one.
func (m *Map) Swap(key, value any) (previous any, loaded bool) {
	read := m.loadRead()
	if e, hit := read.m[key]; hit {
		if prev, ok := e.trySwap(&value); ok {
			count(key, FastStore)
			if prev == nil {
				return nil, false
			}
			return *prev, true
		}
	}
	return m.slowStore(key, value)
}

// slowStore is the phase of a store that must lock: a new key, or an expunged one.
//
//go:noinline
func (m *Map) slowStore(key, value any) (previous any, loaded bool) {
	count(key, SlowStore)
	if !gtTryLock(&m.mu) {
		t := gtNow()
		m.mu.Lock()
		gtWaited(t)
	}
	defer m.mu.Unlock()
	read := m.loadRead()
	if e, hit := read.m[key]; hit {
		if e.unexpungeLocked() {
			m.dirty[key] = e
		}
		if prev := e.p.Swap(&value); prev != nil {
			return *prev, true
		}
		return nil, false
	}
	if e, hit := m.dirty[key]; hit {
		if prev := e.p.Swap(&value); prev != nil {
			return *prev, true
		}
		return nil, false
	}
	m.insertNewLocked(key, newEntry(value), read)
	return nil, false
}

// insertNewLocked adds a key absent from both maps, rebuilding dirty first if this is the
// first new key since a promotion.
func (m *Map) insertNewLocked(key any, e *entry, read readOnly) {
	if !read.amended {
		if m.dirty == nil {
			m.rebuildDirty(key)
		}
		m.read.Store(&readOnly{m: read.m, amended: true})
	}
	m.dirty[key] = e
}

// LoadOrStore returns the existing value for key if present; otherwise it stores value.
func (m *Map) LoadOrStore(key, value any) (actual any, loaded bool) {
	if v, ok := m.Load(key); ok {
		return v, true
	}
	count(key, SlowStore)
	if !gtTryLock(&m.mu) {
		t := gtNow()
		m.mu.Lock()
		gtWaited(t)
	}
	defer m.mu.Unlock()
	read := m.loadRead()
	var e *entry
	if re, hit := read.m[key]; hit {
		if re.unexpungeLocked() {
			m.dirty[key] = re
		}
		e = re
	} else if de, hit := m.dirty[key]; hit {
		e = de
	}
	if e != nil {
		if p := e.p.Load(); p != nil && p != expunged {
			return *p, true
		}
		e.p.Store(&value)
		return value, false
	}
	m.insertNewLocked(key, newEntry(value), read)
	return value, false
}

// LoadAndDelete deletes key, returning its value if it had one.
func (m *Map) LoadAndDelete(key any) (value any, loaded bool) {
	read := m.loadRead()
	if e, hit := read.m[key]; hit {
		return e.delete()
	}
	if !read.amended {
		return nil, false
	}
	return m.slowDelete(key)
}

// slowDelete is the phase of a delete of a key not in the snapshot.
//
//go:noinline
func (m *Map) slowDelete(key any) (any, bool) {
	count(key, SlowDelete)
	if !gtTryLock(&m.mu) {
		t := gtNow()
		m.mu.Lock()
		gtWaited(t)
	}
	e := m.lookupLocked(key, true)
	m.mu.Unlock()
	if e == nil {
		return nil, false
	}
	return e.delete()
}

func (e *entry) delete() (any, bool) {
	for {
		p := e.p.Load()
		if p == nil || p == expunged {
			return nil, false
		}
		if e.p.CompareAndSwap(p, nil) {
			return *p, true
		}
	}
}

// Delete deletes key.
func (m *Map) Delete(key any) { m.LoadAndDelete(key) }

// Range calls f for each key and value until f returns false. It sees one snapshot's key set,
// promoting dirty first when dirty has more keys.
func (m *Map) Range(f func(key, value any) bool) {
	count(nil, Ranges)
	read := m.loadRead()
	if read.amended {
		read = m.rangePromote()
	}
	for k, e := range read.m {
		if v, ok := e.load(); ok && !f(k, v) {
			break
		}
	}
}

// rangePromote is the phase of Range promoting dirty so it can walk one complete snapshot.
//
//go:noinline
func (m *Map) rangePromote() readOnly {
	if !gtTryLock(&m.mu) {
		t := gtNow()
		m.mu.Lock()
		gtWaited(t)
	}
	defer m.mu.Unlock()
	if m.loadRead().amended {
		m.promote(nil)
	}
	return m.loadRead()
}

// Len counts the live keys (a Range: O(n)).
func (m *Map) Len() int {
	n := 0
	m.Range(func(_, _ any) bool { n++; return true })
	return n
}
