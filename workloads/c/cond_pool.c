/*
 * cond_pool: a thread pool idling on a condition variable beside threads contending on
 * one mutex, the mix that makes condvar idling look like lock contention.
 *
 *   cond_pool [idle_threads] [contending_threads] [seconds]
 *
 * idle_threads wait in pool_worker on a condvar; main posts one work item every 50 ms.
 * contending_threads loop in contended_site on one mutex held for a little work each time.
 * At the end main joins a thread that outlives the rest by 200 ms, so a join wait is certain.
 * The functions are out of line with known names so tests can look for them.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cond = PTHREAD_COND_INITIALIZER;
static int queued;
static volatile int stop;

static pthread_mutex_t hot_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile uint64_t shared;

__attribute__((noinline)) static uint64_t work(uint64_t x) {
    for (int i = 0; i < 2000; i++)
        x = x * 6364136223846793005ULL + (uint64_t)i;
    return x;
}

/* Waits for a work item; condition waits here are idle, not contention. */
__attribute__((noinline)) void *pool_worker(void *arg) {
    (void)arg;
    pthread_mutex_lock(&queue_lock);
    while (!stop) {
        while (queued == 0 && !stop)
            pthread_cond_wait(&queue_cond, &queue_lock);
        if (queued > 0) {
            queued--;
            pthread_mutex_unlock(&queue_lock);
            shared += work(1);
            pthread_mutex_lock(&queue_lock);
        }
    }
    pthread_mutex_unlock(&queue_lock);
    return NULL;
}

__attribute__((noinline)) void contended_site(void) {
    pthread_mutex_lock(&hot_lock);
    shared = work(shared);
    pthread_mutex_unlock(&hot_lock);
    shared += 1;
}

/* Outlives the others by 200 ms, so main's first join always waits (an idle-join). */
__attribute__((noinline)) void *lingerer(void *arg) {
    (void)arg;
    struct timespec linger = {0, 200 * 1000 * 1000};
    nanosleep(&linger, NULL);
    return NULL;
}

__attribute__((noinline)) void *contender(void *arg) {
    (void)arg;
    while (!stop)
        contended_site();
    return NULL;
}

int main(int argc, char **argv) {
    int idle = argc > 1 ? atoi(argv[1]) : 6;
    int busy = argc > 2 ? atoi(argv[2]) : 4;
    double seconds = argc > 3 ? atof(argv[3]) : 2.0;
    if (idle < 0 || busy < 0 || idle + busy > 256 || seconds <= 0) {
        fprintf(stderr, "usage: cond_pool [idle_threads] [contending_threads] [seconds]\n");
        return 2;
    }
    pthread_t t[256];
    for (int i = 0; i < idle; i++)
        pthread_create(&t[i], NULL, pool_worker, NULL);
    for (int i = 0; i < busy; i++)
        pthread_create(&t[idle + i], NULL, contender, NULL);
    struct timespec tick = {0, 50 * 1000 * 1000};
    for (int n = 0; n < (int)(seconds * 20); n++) {
        nanosleep(&tick, NULL);
        pthread_mutex_lock(&queue_lock);
        queued++;
        pthread_cond_signal(&queue_cond);
        pthread_mutex_unlock(&queue_lock);
    }
    pthread_t last;
    pthread_create(&last, NULL, lingerer, NULL);
    pthread_mutex_lock(&queue_lock);
    stop = 1;
    pthread_cond_broadcast(&queue_cond);
    pthread_mutex_unlock(&queue_lock);
    pthread_join(last, NULL);
    for (int i = 0; i < idle + busy; i++)
        pthread_join(t[i], NULL);
    printf("%llu\n", (unsigned long long)shared);
    return 0;
}
