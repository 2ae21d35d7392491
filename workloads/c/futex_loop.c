/*
 * futex_loop: one kind of system call in a tight loop, timed, to measure what a tracer adds
 * per call.
 *
 *   futex_loop MODE CALLS [--start-delay S] [--start-on-stdin] [--linger S]
 *
 * --start-on-stdin: begin once a line (or EOF) is read on stdin, so a test can start the loop
 * when its tracers are attached instead of after a guessed delay.
 *
 * MODE:
 *   wake     FUTEX_WAKE on a private word nobody waits on (wakes nobody)
 *   eagain   FUTEX_WAIT whose expected value is wrong, so it returns EAGAIN at once
 *   block    two threads hand a word back and forth: every FUTEX_WAIT sleeps, every
 *            FUTEX_WAKE wakes one (CALLS round trips; ns per round trip)
 *   getppid  getppid(2): an unrelated system call, for the host-wide tax of tracepoints
 *   ignored  FUTEX_TRYLOCK_PI on a free word: an op that neither waits nor wakes
 *   waitv    like block, but the partner thread waits with futex_waitv(2)
 *   restart  a thread waits (FUTEX_WAIT, 10 s timeout) until main wakes it after CALLS ms;
 *            stopped and continued from outside meanwhile (SIGSTOP, SIGCONT), its wait
 *            resumes through restart_syscall(2)
 *
 * Prints {"mode": MODE, "calls": N, "ns_per_call": X, "ops_per_sec": Y}.
 */
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static _Atomic uint32_t word;
static long calls;

/* Always inlined: the word at the user SP on entry to syscall() is then a return address into
 * the caller (main, partner), which tells the two threads' wakes apart without frame pointers. */
static inline __attribute__((always_inline)) long futex(void *addr, int op, uint32_t val) {
    return syscall(SYS_futex, addr, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static int use_waitv;

/* futex_waitv(2) on the one word (struct futex_waitv from linux/futex.h, Linux >= 5.16). */
static long waitv(void *addr, uint32_t val) {
#ifdef SYS_futex_waitv
    struct futex_waitv w = {.val = val, .uaddr = (uintptr_t)addr, .flags = 2 | 128};
    return syscall(SYS_futex_waitv, &w, 1, 0, NULL, 0);
#else
    return futex(addr, FUTEX_WAIT, val);
#endif
}

/* The ping-pong partner: waits for 1, sets 0 and wakes the main thread. */
static void *partner(void *arg) {
    (void)arg;
    for (long i = 0; i < calls; i++) {
        while (atomic_load(&word) != 1) {
            if (use_waitv)
                waitv(&word, 0);
            else
                futex(&word, FUTEX_WAIT, 0);
        }
        atomic_store(&word, 0);
        futex(&word, FUTEX_WAKE, 1);
    }
    return NULL;
}

/* restart: waits with a timeout until main sets the word. */
static void *timed_waiter(void *arg) {
    (void)arg;
    struct timespec ts = {10, 0};
    while (atomic_load(&word) == 0)
        syscall(SYS_futex, &word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0, &ts, NULL, 0);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: futex_loop wake|eagain|block|waitv|restart|getppid|ignored CALLS [--start-delay S] [--start-on-stdin] [--linger S]\n");
        return 2;
    }
    const char *mode = argv[1];
    calls = atol(argv[2]);
    double start_delay = 0, linger = 0;
    int start_on_stdin = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--start-on-stdin"))
            start_on_stdin = 1;
        else if (!strcmp(argv[i], "--start-delay") && i + 1 < argc)
            start_delay = atof(argv[++i]);
        else if (!strcmp(argv[i], "--linger") && i + 1 < argc)
            linger = atof(argv[++i]);
    }
    sleep_s(start_delay);
    if (start_on_stdin) {
        char c;
        while (read(0, &c, 1) == 1 && c != '\n')
            ;
    }
    pthread_t t;
    use_waitv = !strcmp(mode, "waitv");
    int block = !strcmp(mode, "block") || use_waitv;
    int restart = !strcmp(mode, "restart");
    if (block)
        pthread_create(&t, NULL, partner, NULL);
    if (restart)
        pthread_create(&t, NULL, timed_waiter, NULL);
    double t0 = now();
    if (!strcmp(mode, "wake")) {
        for (long i = 0; i < calls; i++)
            futex(&word, FUTEX_WAKE, 1);
    } else if (!strcmp(mode, "eagain")) {
        for (long i = 0; i < calls; i++)
            futex(&word, FUTEX_WAIT, 12345);
    } else if (block) {
        for (long i = 0; i < calls; i++) {
            atomic_store(&word, 1);
            futex(&word, FUTEX_WAKE, 1);
            while (atomic_load(&word) != 0)
                futex(&word, FUTEX_WAIT, 1);
        }
    } else if (!strcmp(mode, "ignored")) {
        for (long i = 0; i < calls; i++) {
            futex(&word, FUTEX_TRYLOCK_PI, 0);
            atomic_store(&word, 0);
        }
    } else if (restart) {
        sleep_s(calls / 1000.0);
        atomic_store(&word, 1);
        futex(&word, FUTEX_WAKE, 1);
    } else if (!strcmp(mode, "getppid")) {
        for (long i = 0; i < calls; i++)
            syscall(SYS_getppid);
    } else {
        fprintf(stderr, "futex_loop: unknown mode %s\n", mode);
        return 2;
    }
    double dt = now() - t0;
    if (block || restart)
        pthread_join(t, NULL);
    printf("{\"mode\": \"%s\", \"calls\": %ld, \"ns_per_call\": %.1f, \"ops_per_sec\": %.0f}\n", mode,
           calls, dt * 1e9 / calls, calls / dt);
    fflush(stdout);
    sleep_s(linger);
    return 0;
}
