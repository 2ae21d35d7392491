// wrapped_mutex: a cache whose mutex is wrapped like RocksDB's port::Mutex. The wrapper
// checks pthread_mutex_lock's result (so it is no tail call and keeps its own frame), and two
// callers with different loads take it: Cache::Lookup three times for each Cache::Insert.
// The program times each caller's Lock() itself and writes the totals to a file, so a tracer's
// split of the wait between the two callers can be checked against the program's own.
//
// Usage: wrapped_mutex SECONDS OUT_FILE [pthread|std]
// OUT_FILE gets one line: `lookup_wait_ns=N insert_wait_ns=M lookups=A inserts=B`.
// `noinline` stands in for RocksDB's separate translation units (port_posix.cc, lru_cache.cc).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <atomic>
#include <mutex>

namespace port {

// pthread_mutex_t with its result checked, as rocksdb::port::Mutex does.
class Mutex {
 public:
  Mutex() { pthread_mutex_init(&mu_, nullptr); }
  __attribute__((noinline)) void Lock();
  __attribute__((noinline)) void Unlock();

 private:
  pthread_mutex_t mu_;
};

void Mutex::Lock() {
  int rc = pthread_mutex_lock(&mu_);
  if (rc != 0) {
    fprintf(stderr, "pthread lock: %s\n", strerror(rc));
    abort();
  }
}

void Mutex::Unlock() {
  int rc = pthread_mutex_unlock(&mu_);
  if (rc != 0) {
    fprintf(stderr, "pthread unlock: %s\n", strerror(rc));
    abort();
  }
}

// std::mutex behind the same interface (std::mutex::lock throws on error).
class StdMutex {
 public:
  __attribute__((noinline)) void Lock() { mu_.lock(); }
  __attribute__((noinline)) void Unlock() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

}  // namespace port

static std::atomic<bool> stop{false};
static std::atomic<unsigned long long> lookup_wait{0}, insert_wait{0}, lookups{0}, inserts{0};

static unsigned long long now_ns() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (unsigned long long)t.tv_sec * 1000000000ull + t.tv_nsec;
}

static void spin(unsigned n) {
  for (volatile unsigned i = 0; i < n; i++) {
  }
}

template <class M>
class Cache {
 public:
  __attribute__((noinline)) unsigned Lookup(unsigned key) {
    unsigned long long t0 = now_ns();
    mu_.Lock();
    lookup_wait.fetch_add(now_ns() - t0, std::memory_order_relaxed);
    spin(300);
    unsigned v = slots_[key % 64];
    mu_.Unlock();
    return v;
  }
  __attribute__((noinline)) void Insert(unsigned key) {
    unsigned long long t0 = now_ns();
    mu_.Lock();
    insert_wait.fetch_add(now_ns() - t0, std::memory_order_relaxed);
    spin(300);
    slots_[key % 64] = key;
    mu_.Unlock();
  }

 private:
  M mu_;
  unsigned slots_[64] = {};
};

template <class M>
static void* worker(void* arg) {
  Cache<M>* cache = static_cast<Cache<M>*>(arg);
  unsigned long long l = 0, n = 0;
  for (unsigned i = 0; !stop.load(std::memory_order_relaxed); i++) {
    if (i % 4 == 3) {
      cache->Insert(i);
      n++;
    } else {
      l += cache->Lookup(i) != 0 ? 1 : 1;
    }
    spin(200);
  }
  lookups += l;
  inserts += n;
  return nullptr;
}

template <class M>
static void run(int seconds) {
  Cache<M> cache;
  pthread_t t[4];
  for (auto& th : t) pthread_create(&th, nullptr, worker<M>, &cache);
  struct timespec d = {seconds, 0};
  nanosleep(&d, nullptr);
  stop = true;
  for (auto& th : t) pthread_join(th, nullptr);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: wrapped_mutex SECONDS OUT_FILE [pthread|std]\n");
    return 2;
  }
  int seconds = atoi(argv[1]);
  bool use_std = argc > 3 && strcmp(argv[3], "std") == 0;
  if (use_std) {
    run<port::StdMutex>(seconds);
  } else {
    run<port::Mutex>(seconds);
  }
  FILE* f = fopen(argv[2], "wx");
  if (!f) {
    perror("wrapped_mutex: OUT_FILE");
    return 1;
  }
  fprintf(f, "lookup_wait_ns=%llu insert_wait_ns=%llu lookups=%llu inserts=%llu\n",
          lookup_wait.load(), insert_wait.load(), lookups.load(), inserts.load());
  fclose(f);
  return 0;
}
