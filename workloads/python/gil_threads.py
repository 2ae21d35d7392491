"""gil_threads: four CPU-bound Python threads that can only run one at a time (the GIL).

Usage: python3 gil_threads.py [ITERATIONS]

Each thread times itself: wall time and its own CPU time (time.thread_time). The difference
is time the thread was not running: on a free machine, time spent waiting for the GIL.
Prints `threads_wall_s=W threads_cpu_s=C off_cpu_s=O` (sums over the four threads).
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
    w0, c0 = time.perf_counter(), time.thread_time()
    spin(n)
    out[i] = (time.perf_counter() - w0, time.thread_time() - c0)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    out = [None] * 4
    threads = [threading.Thread(target=worker, args=(out, i, n)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = sum(w for w, _ in out)
    cpu = sum(c for _, c in out)
    print(f"threads_wall_s={wall:.3f} threads_cpu_s={cpu:.3f} off_cpu_s={wall - cpu:.3f}")


main()
