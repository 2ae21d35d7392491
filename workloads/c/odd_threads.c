/*
 * odd_threads: processes that are unusual in ways a tracer running as root must handle.
 *
 *   odd_threads escape-name SECONDS   threads named with a terminal escape sequence contend
 *   odd_threads leader-exits SECONDS  the main thread calls pthread_exit; the others contend
 *
 * Three threads take one mutex in a loop in `odd_lock_site` for SECONDS.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static volatile unsigned long shared;
static double seconds;

/* Sets the window title and clears the screen if printed raw to a terminal. */
static const char evil[] = "\033]0;pwned\007\033[2J";

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void odd_lock_site(void) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < 300; i++)
        shared = shared * 6364136223846793005UL + i;
    pthread_mutex_unlock(&lock);
    shared += 1;
}

static void *worker(void *name) {
    if (name)
        prctl(PR_SET_NAME, name);
    double end = now() + seconds;
    while (now() < end)
        odd_lock_site();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: odd_threads escape-name|leader-exits SECONDS\n");
        return 2;
    }
    seconds = atof(argv[2]);
    int escape = !strcmp(argv[1], "escape-name");
    if (escape)
        prctl(PR_SET_NAME, evil);
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, worker, escape ? (void *)evil : NULL);
    if (!strcmp(argv[1], "leader-exits"))
        pthread_exit(NULL); /* the process lives on in its threads */
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    return 0;
}
