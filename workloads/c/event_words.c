// event_words: futex words used as one thread's event beside a real contended mutex, as
// MariaDB's group commit does. Each of 4 waiters parks on its own word with a raw
// syscall(SYS_futex, FUTEX_WAIT_PRIVATE) in wait_for_commit() until one of 3 committers sets
// the word and wakes it; any committer may wake any waiter. The committers also fight over one
// pthread mutex in contended_site(). A tracer should call the mutex contention and the
// per-thread words event waits.
//
// Usage: event_words SECONDS
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WAITERS 4
#define COMMITTERS 3

static atomic_int stop;
static _Alignas(64) atomic_int words[WAITERS][16];  // one cache line each; [i][0] is the word
static atomic_int pending[WAITERS][16];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long shared_log;

static void spin(unsigned n) {
  for (volatile unsigned i = 0; i < n; i++) {
  }
}

__attribute__((noinline)) static void wait_for_commit(int i) {
  while (atomic_load(&words[i][0]) == 0 && !atomic_load(&stop)) {
    syscall(SYS_futex, &words[i][0], FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
  }
}

static void* waiter(void* arg) {
  int i = (int)(long)arg;
  while (!atomic_load(&stop)) {
    atomic_store(&words[i][0], 0);
    atomic_store(&pending[i][0], 1);
    wait_for_commit(i);
    spin(2000);
  }
  return NULL;
}

__attribute__((noinline)) static void contended_site(void) {
  pthread_mutex_lock(&log_lock);
  spin(3000);
  shared_log++;
  pthread_mutex_unlock(&log_lock);
}

static void* committer(void* arg) {
  int start = (int)(long)arg;
  for (unsigned round = 0; !atomic_load(&stop); round++) {
    contended_site();
    // Each committer starts its sweep at a different waiter, so every word has several wakers.
    for (int k = 0; k < WAITERS; k++) {
      int i = (start + round + k) % WAITERS;
      int one = 1;
      if (atomic_compare_exchange_strong(&pending[i][0], &one, 0)) {
        atomic_store(&words[i][0], 1);
        syscall(SYS_futex, &words[i][0], FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        break;
      }
    }
  }
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: event_words SECONDS\n");
    return 2;
  }
  pthread_t w[WAITERS], c[COMMITTERS];
  for (long i = 0; i < WAITERS; i++) pthread_create(&w[i], NULL, waiter, (void*)i);
  for (long i = 0; i < COMMITTERS; i++) pthread_create(&c[i], NULL, committer, (void*)i);
  struct timespec d = {atoi(argv[1]), 0};
  nanosleep(&d, NULL);
  atomic_store(&stop, 1);
  for (int i = 0; i < COMMITTERS; i++) pthread_join(c[i], NULL);
  for (int i = 0; i < WAITERS; i++) {
    atomic_store(&words[i][0], 1);
    syscall(SYS_futex, &words[i][0], FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    pthread_join(w[i], NULL);
  }
  printf("log entries %llu\n", shared_log);
  return 0;
}
