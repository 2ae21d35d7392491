//go:build groundtruth

// Ground truth for lockscope's holder blame (build tag groundtruth; compiled out otherwise):
// every wait for the map's mutex that blocked (TryLock failed; until locked) and every run of
// promote and rebuildDirty, with CLOCK_MONOTONIC timestamps (Go's monotonic clock reading),
// appended to a preallocated log without locking. DumpGroundTruth writes them at exit.

package syncmap

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

type gtRec struct {
	kind       string
	start, end int64
}

var (
	gtBase = time.Now()
	gtLog  = make([]gtRec, 1<<22)
	gtN    atomic.Int64
)

// gtNow is ns on the monotonic clock since the process's first use of this file.
func gtNow() int64 { return int64(time.Since(gtBase)) }

func gtRecord(kind string, start int64) {
	end := gtNow()
	if i := gtN.Add(1) - 1; i < int64(len(gtLog)) {
		gtLog[i] = gtRec{kind, start, end}
	}
}

// gtTryLock takes mu if it is free; when not, the caller times its blocking Lock.
func gtTryLock(mu *sync.Mutex) bool { return mu.TryLock() }

func gtWaited(start int64)             { gtRecord("wait", start) }
func gtPhase(kind string, start int64) { gtRecord(kind, start) }

// GroundTruth says whether this build logs the ground truth.
const GroundTruth = true

// DumpGroundTruth writes every logged interval, one per line: `thread kind start_ns end_ns`
// (thread 0 for phase runs and 1 for waits: goroutines have no id, and a goroutine's own
// phases never overlap its own waits).
func DumpGroundTruth(w io.Writer) error {
	n := gtN.Load()
	if n > int64(len(gtLog)) {
		n = int64(len(gtLog))
	}
	for _, r := range gtLog[:n] {
		thread := 0
		if r.kind == "wait" {
			thread = 1
		}
		if _, err := fmt.Fprintf(w, "%d %s %d %d\n", thread, r.kind, r.start, r.end); err != nil {
			return err
		}
	}
	return nil
}
