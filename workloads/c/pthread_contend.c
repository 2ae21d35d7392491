/*
 * pthread_contend: threads contending on one pthread mutex, built by the tests with
 * `-O2 -fomit-frame-pointer` so that only DWARF unwinding can walk its stacks.
 *
 *   pthread_contend [threads] [seconds]
 *
 * Each thread calls worker -> contended_site -> pthread_mutex_lock. The functions are kept
 * out of line with known names so a test can look for them in lockscope's stacks.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    if (threads < 1 || threads > 256 || seconds <= 0) {
        fprintf(stderr, "usage: pthread_contend [threads] [seconds]\n");
        return 2;
    }
    pthread_t tids[256];
    uint64_t counts[256] = {0};
    for (int i = 0; i < threads; i++)
        pthread_create(&tids[i], NULL, worker, &counts[i]);
    struct timespec ts = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
    stop = 1;
    uint64_t total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        total += counts[i];
    }
    printf("{\"locks\": %llu}\n", (unsigned long long)total);
    return 0;
}
