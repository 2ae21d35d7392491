"""gil_threads: four CPU-bound Python threads that can only run one at a time (the GIL).

Usage: python3 gil_threads.py [ITERATIONS]

Each worker's life is timed: wall time from just before `start()` to the end of its work, and
its own CPU time (`time.thread_time`, counted from the thread's creation). The difference is time
the thread was not running: on a free machine, time spent waiting for the GIL, including its
first take of the GIL at start. The main thread's own GIL waits (after each `join`) are not in
it. Prints `threads_wall_s=W threads_cpu_s=C off_cpu_s=O worker_tids=T1,T2,T3,T4` (sums over the
four workers; tids as the kernel numbers them).
"""
import sys
import threading
import time


def spin(n):
    x = 0
    for i in range(n):
        x += i
    return x


def worker(out, i, n):
    out[i] = threading.get_native_id()
    spin(n)
    out[i] = (out[i], time.perf_counter(), time.thread_time())


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    out = [None] * 4
    threads = [threading.Thread(target=worker, args=(out, i, n)) for i in range(4)]
    started = []
    for t in threads:
        started.append(time.perf_counter())
        t.start()
    for t in threads:
        t.join()
    wall = sum(end - w0 for w0, (_, end, _) in zip(started, out))
    cpu = sum(c for _, _, c in out)
    tids = ",".join(str(tid) for tid, _, _ in out)
    print(
        f"threads_wall_s={wall:.3f} threads_cpu_s={cpu:.3f} off_cpu_s={wall - cpu:.3f} "
        f"worker_tids={tids}"
    )


main()
