// timeouts: futex waits that time out beside a contended mutex. Two threads each make CALLS
// FUTEX_WAIT_PRIVATE calls with a 200 µs timeout on a word nobody wakes (every one sleeps and
// times out); two more fight over a pthread mutex in contended_site(). Prints `timeouts N`,
// the ETIMEDOUT returns the program itself counted, so a tracer's count can be checked.
//
// Usage: timeouts CALLS
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static atomic_int word;
static atomic_long timed_out;
static atomic_int stop;
static long calls;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

__attribute__((noinline)) static void wait_a_little(void) {
  struct timespec t = {0, 200000};
  if (syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &t, NULL, 0) == -1 && errno == ETIMEDOUT)
    atomic_fetch_add(&timed_out, 1);
}

static void* sleeper(void* arg) {
  (void)arg;
  for (long i = 0; i < calls; i++) wait_a_little();
  return NULL;
}

__attribute__((noinline)) static void contended_site(void) {
  pthread_mutex_lock(&lock);
  for (volatile int i = 0; i < 20000; i++) {
  }
  pthread_mutex_unlock(&lock);
}

static void* locker(void* arg) {
  (void)arg;
  while (!atomic_load(&stop)) contended_site();
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: timeouts CALLS\n");
    return 2;
  }
  calls = atol(argv[1]);
  pthread_t s[2], l[2];
  for (int i = 0; i < 2; i++) pthread_create(&l[i], NULL, locker, NULL);
  for (int i = 0; i < 2; i++) pthread_create(&s[i], NULL, sleeper, NULL);
  for (int i = 0; i < 2; i++) pthread_join(s[i], NULL);
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(l[i], NULL);
  printf("timeouts %ld\n", atomic_load(&timed_out));
  return 0;
}
