/*
 * deadlock: two threads take two pthread mutexes in opposite orders (A then B, B then A)
 * and deadlock at once; main then waits in pthread_join forever. Built by the tests with
 * gcc; lockscope attaches after the deadlock began.
 *
 *   deadlock        prints "deadlocked" once both threads hold their first lock
 *
 * The lock sites are out-of-line functions with known names for the tests to look for.
 */
#include <pthread.h>
#include <stdio.h>

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

int main(void) {
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
