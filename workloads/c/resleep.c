// resleep: threads that sleep on one futex word, wake, then sleep on a mutex, over and over;
// no single wait is longer than about 60 ms (a tick every 60 ms, a hold of 40 ms). Attaching
// to it while a thread sleeps, a tracer must not date the thread's next, unrelated wait from
// its first look at the thread.
//
// Usage: resleep   (runs until killed; prints `ready` once its threads run)
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SLEEPERS 4

static atomic_int ticks[SLEEPERS][16];
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;

__attribute__((noinline)) static void wait_for_tick(atomic_int* w) {
  while (atomic_exchange(w, 0) == 0) syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

__attribute__((noinline)) static void wait_for_lock(void) {
  pthread_mutex_lock(&held);
  pthread_mutex_unlock(&held);
}

static void* sleeper(void* arg) {
  atomic_int* w = &ticks[(long)arg][0];
  for (;;) {
    wait_for_tick(w);
    wait_for_lock();
  }
  return NULL;
}

static void* holder(void* arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&held);
    usleep(40000);
    pthread_mutex_unlock(&held);
    usleep(20000);
  }
  return NULL;
}

static void* ticker(void* arg) {
  (void)arg;
  for (;;) {
    usleep(60000);
    for (int i = 0; i < SLEEPERS; i++) {
      atomic_store(&ticks[i][0], 1);
      syscall(SYS_futex, &ticks[i][0], FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
  }
  return NULL;
}

int main(void) {
  pthread_t t;
  for (long i = 0; i < SLEEPERS; i++) pthread_create(&t, NULL, sleeper, (void*)i);
  pthread_create(&t, NULL, holder, NULL);
  pthread_create(&t, NULL, ticker, NULL);
  printf("ready\n");
  fflush(stdout);
  for (;;) pause();
}
