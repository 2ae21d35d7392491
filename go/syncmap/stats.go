package syncmap

import "sync/atomic"

// Event is one kind of map operation the map counts: the ground truth lockscope checks its
// traced counts against. The order and names match the Rust map's (syncmap/src/stats.rs),
// so lockscope reads both with one reader.
type Event int

const (
	FastRead      Event = iota // Load answered from the read snapshot without locking.
	SlowLoad                   // Load missed the snapshot and took the lock.
	ReadMiss                   // A miss toward promotion (counted in missLocked).
	Promotion                  // Dirty became the read snapshot (O(1) swap).
	Rebuild                    // Dirty rebuilt from the snapshot (O(n) copy under the lock).
	EntriesCopied              // Entries copied by rebuilds.
	SlowStore                  // Stores that took the lock.
	FastStore                  // Stores that updated an entry in the snapshot without locking.
	SlowDelete                 // Deletes that took the lock.
	Ranges                     // Range calls.
	numEvents
)

// Names are the events' names, in order, as the Rust map spells them.
var Names = [numEvents]string{
	"fast_reads", "slow_loads", "read_misses", "promotions", "rebuilds",
	"entries_copied", "slow_stores", "fast_stores", "slow_deletes", "ranges",
}

const shards = 64

// shard is one cache line pair of counters, so goroutines counting through different shards
// do not contend on one line.
type shard struct {
	counts [numEvents]atomic.Uint64
	_      [128 - 8*numEvents]byte
}

// stats has the Rust map's layout: magic, event count, shard count, padding to 128 bytes,
// then the shards. lockscope finds it by symbol and reads it from the process's memory.
type stats struct {
	Magic     uint64
	Events    uint64
	ShardsLen uint64
	_         [128 - 24]byte
	Shards    [shards]shard
}

// SYNCMAP_STATS is named like the Rust map's exported static so lockscope finds either.
//
//nolint:revive,stylecheck // the name is a cross-language contract
var SYNCMAP_STATS = stats{Magic: 0x504f43534b434f4c, Events: uint64(numEvents), ShardsLen: shards}

// shardOf spreads counting over shards by key, so goroutines working on different keys
// rarely share a counter line. Go has no goroutine-local storage to shard by.
func shardOf(key any) *shard {
	var h uint64
	switch k := key.(type) {
	case int:
		h = uint64(k)
	case uint64:
		h = k
	case int64:
		h = uint64(k)
	case string:
		for i := 0; i < len(k); i++ {
			h = h*31 + uint64(k[i])
		}
	}
	return &SYNCMAP_STATS.Shards[(h*0x9E3779B97F4A7C15)>>58]
}

func count(key any, e Event) { shardOf(key).counts[e].Add(1) }

func add(key any, e Event, n uint64) { shardOf(key).counts[e].Add(n) }

// Snapshot returns the counters summed over shards.
func Snapshot() [numEvents]uint64 {
	var out [numEvents]uint64
	for i := range SYNCMAP_STATS.Shards {
		for e := range out {
			out[e] += SYNCMAP_STATS.Shards[i].counts[e].Load()
		}
	}
	return out
}
