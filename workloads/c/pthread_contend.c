/*
 * pthread_contend: threads contending on one pthread mutex, built by the tests with
 * `-O2 -fomit-frame-pointer` so that only DWARF unwinding can walk its stacks.
 *
 *   pthread_contend [threads] [seconds] [--start-delay S] [--linger S]
 *
 * It prints {"locks": N, "locks_per_sec": X} for the run; with --start-delay it waits before
 * starting (a tracer attaches meanwhile), with --linger it stays after printing.
 *
 * Each thread calls worker -> contended_site -> pthread_mutex_lock. The functions are kept
 * out of line with known names so a test can look for them in lockscope's stacks.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static volatile uint64_t shared;
static volatile int stop;

/* A little arithmetic under the lock, so waiters pile up. */
__attribute__((noinline)) static uint64_t work(uint64_t x) {
    for (int i = 0; i < 200; i++)
        x = x * 6364136223846793005ULL + (uint64_t)i;
    return x;
}

__attribute__((noinline)) void contended_site(void) {
    pthread_mutex_lock(&lock);
    shared = work(shared);
    pthread_mutex_unlock(&lock);
    /* Work after the unlock keeps this a real call, not a tail call. */
    shared += 1;
}

__attribute__((noinline)) void *worker(void *arg) {
    uint64_t n = 0;
    while (!stop) {
        contended_site();
        n++;
    }
    *(uint64_t *)arg = n;
    return NULL;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    double start_delay = 0, linger = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--start-delay"))
            start_delay = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--linger"))
            linger = atof(argv[i + 1]);
    }
    if (threads < 1 || threads > 256 || seconds <= 0) {
        fprintf(stderr, "usage: pthread_contend [threads] [seconds] [--start-delay S] [--linger S]\n");
        return 2;
    }
    sleep_s(start_delay);
    pthread_t tids[256];
    uint64_t counts[256] = {0};
    for (int i = 0; i < threads; i++)
        pthread_create(&tids[i], NULL, worker, &counts[i]);
    sleep_s(seconds);
    stop = 1;
    uint64_t total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        total += counts[i];
    }
    printf("{\"locks\": %llu, \"locks_per_sec\": %.0f}\n", (unsigned long long)total,
           (double)total / seconds);
    fflush(stdout);
    sleep_s(linger);
    return 0;
}
