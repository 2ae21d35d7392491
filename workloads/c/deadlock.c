/*
 * deadlock: two threads take two pthread mutexes in opposite orders (A then B, B then A)
 * and deadlock at once; main then waits in pthread_join forever. Built by the tests with
 * gcc; lockscope attaches after the deadlock began.
 *
 *   deadlock             prints "deadlocked" once both threads hold their first lock
 *   deadlock release S   no deadlock: main holds a mutex, a thread blocks on it in
 *                        blocked_site, main prints "blocked", and unlocks S seconds later
 *
 * The lock sites are out-of-line functions with known names for the tests to look for.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both_hold_one;
static volatile int sink;

__attribute__((noinline)) void lock_a_then_b(void) {
    pthread_mutex_lock(&lock_a);
    pthread_barrier_wait(&both_hold_one);
    pthread_mutex_lock(&lock_b); /* never returns: the other thread holds B */
    sink++;
    pthread_mutex_unlock(&lock_b);
    pthread_mutex_unlock(&lock_a);
}

__attribute__((noinline)) void lock_b_then_a(void) {
    pthread_mutex_lock(&lock_b);
    pthread_barrier_wait(&both_hold_one);
    pthread_mutex_lock(&lock_a); /* never returns: the other thread holds A */
    sink++;
    pthread_mutex_unlock(&lock_a);
    pthread_mutex_unlock(&lock_b);
}

static void *first(void *arg) {
    (void)arg;
    lock_a_then_b();
    return NULL;
}

static void *second(void *arg) {
    (void)arg;
    lock_b_then_a();
    return NULL;
}

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;

__attribute__((noinline)) void blocked_site(void) {
    pthread_mutex_lock(&held); /* blocks until main lets go */
    sink++;
    pthread_mutex_unlock(&held);
}

static void *blocked_thread(void *arg) {
    (void)arg;
    blocked_site();
    return NULL;
}

/* A thread blocked before attach that wakes during the recording. */
static int release_after(double seconds) {
    pthread_t t;
    pthread_mutex_lock(&held);
    pthread_create(&t, NULL, blocked_thread, NULL);
    struct timespec settle = {0, 200 * 1000 * 1000};
    nanosleep(&settle, NULL);
    puts("blocked");
    fflush(stdout);
    struct timespec hold = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    nanosleep(&hold, NULL);
    pthread_mutex_unlock(&held);
    pthread_join(t, NULL);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "release") == 0)
        return release_after(atof(argv[2]));
    pthread_t t1, t2;
    pthread_barrier_init(&both_hold_one, NULL, 3);
    pthread_create(&t1, NULL, first, NULL);
    pthread_create(&t2, NULL, second, NULL);
    pthread_barrier_wait(&both_hold_one);
    puts("deadlocked");
    fflush(stdout);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    return 0;
}
