// Heap profiler for `scripts/heap-profile`: preloaded into the server (LD_PRELOAD), it
// keeps the allocating stack of every live malloc block. When the file $HEAPSHIM_DIR/dump-now
// appears, it writes the live bytes per stack, largest first, to $HEAPSHIM_DIR/dump-PID and
// a copy of the process's maps to $HEAPSHIM_DIR/maps-PID (symbolize.py names the frames).
// A measuring tool only: slow (a backtrace per allocation) and never linked into webims.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <malloc.h>

#define DEPTH 18
#define TBL (1u << 24)
typedef struct { void *p; size_t size; uint32_t stack; } Ent;
typedef struct { void *frames[DEPTH]; int n; uint64_t bytes; uint64_t count; } Stack;
static Ent *tbl; static Stack *stacks; static uint32_t nstacks;
#define NST (1u << 18)
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static __thread int inside;
extern void *__libc_malloc(size_t); extern void __libc_free(void *); extern void *__libc_realloc(void *, size_t);
extern void *__libc_calloc(size_t, size_t); extern void *__libc_memalign(size_t, size_t);
static int ready;

static uint64_t h64(uint64_t x) { x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; return x; }
static uint32_t stack_id(void **f, int n) {
  uint64_t h = 1469598103934665603ULL;
  for (int i = 0; i < n; i++) h = h64(h ^ (uint64_t)f[i]);
  uint32_t s = h & (NST - 1);
  for (;;) {
    if (stacks[s].n == 0) { memcpy(stacks[s].frames, f, n * sizeof(void *)); stacks[s].n = n; nstacks++; return s; }
    if (stacks[s].n == n && memcmp(stacks[s].frames, f, n * sizeof(void *)) == 0) return s;
    s = (s + 1) & (NST - 1);
  }
}
static void track(void *p, size_t size) {
  if (!ready || !p || inside) return;
  inside = 1;
  void *f[DEPTH + 2]; int n = backtrace(f, DEPTH + 2);
  pthread_mutex_lock(&mu);
  uint32_t sid = stack_id(f + 2, n > 2 ? n - 2 : 0);
  stacks[sid].bytes += size; stacks[sid].count++;
  uint64_t i = h64((uint64_t)p) & (TBL - 1);
  while (tbl[i].p && tbl[i].p != (void *)1) i = (i + 1) & (TBL - 1);
  tbl[i].p = p; tbl[i].size = size; tbl[i].stack = sid;
  pthread_mutex_unlock(&mu);
  inside = 0;
}
static void untrack(void *p) {
  if (!ready || !p || inside) return;
  pthread_mutex_lock(&mu);
  uint64_t i = h64((uint64_t)p) & (TBL - 1);
  while (tbl[i].p) {
    if (tbl[i].p == p) { stacks[tbl[i].stack].bytes -= tbl[i].size; stacks[tbl[i].stack].count--; tbl[i].p = (void *)1; break; }
    i = (i + 1) & (TBL - 1);
  }
  pthread_mutex_unlock(&mu);
}
void *malloc(size_t s) { void *p = __libc_malloc(s); track(p, malloc_usable_size(p)); return p; }
void free(void *p) { untrack(p); __libc_free(p); }
void *calloc(size_t a, size_t b) { void *p = __libc_calloc(a, b); track(p, malloc_usable_size(p)); return p; }
void *realloc(void *o, size_t s) { untrack(o); void *p = __libc_realloc(o, s); track(p, malloc_usable_size(p)); return p; }
int posix_memalign(void **r, size_t a, size_t s) { void *p = __libc_memalign(a, s); if (!p) return 12; *r = p; track(p, malloc_usable_size(p)); return 0; }
void *aligned_alloc(size_t a, size_t s) { void *p = __libc_memalign(a, s); track(p, malloc_usable_size(p)); return p; }
void *memalign(size_t a, size_t s) { void *p = __libc_memalign(a, s); track(p, malloc_usable_size(p)); return p; }

static int cmp(const void *a, const void *b) {
  const Stack *x = *(Stack *const *)a, *y = *(Stack *const *)b;
  return (int64_t)y->bytes > (int64_t)x->bytes ? 1 : (int64_t)y->bytes < (int64_t)x->bytes ? -1 : 0;
}
static void *watcher(void *arg) {
  (void)arg; inside = 1;
  for (;;) {
    sleep(1);
    const char *dir = getenv("HEAPSHIM_DIR");
    if (!dir) dir = "/tmp";
    char path[512], trigger[512];
    snprintf(path, sizeof path, "%s/dump-%d", dir, getpid());
    snprintf(trigger, sizeof trigger, "%s/dump-now", dir);
    if (access(trigger, F_OK) != 0) continue;
    unlink(trigger);
    pthread_mutex_lock(&mu);
    static Stack *order[NST]; uint32_t k = 0;
    for (uint32_t i = 0; i < NST; i++) if (stacks[i].n && (int64_t)stacks[i].bytes > 0) order[k++] = &stacks[i];
    qsort(order, k, sizeof order[0], cmp);
    FILE *f = fopen(path, "w");
    if (!f) { pthread_mutex_unlock(&mu); continue; }
    uint64_t tot = 0; for (uint32_t i = 0; i < k; i++) tot += order[i]->bytes;
    fprintf(f, "total %llu\n", (unsigned long long)tot);
    for (uint32_t i = 0; i < k && i < 80; i++) {
      fprintf(f, "%llu %llu", (unsigned long long)order[i]->bytes, (unsigned long long)order[i]->count);
      for (int j = 0; j < order[i]->n; j++) fprintf(f, " %p", order[i]->frames[j]);
      fprintf(f, "\n");
    }
    fclose(f);
    pthread_mutex_unlock(&mu);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp /proc/%d/maps %s/maps-%d", getpid(), dir, getpid());
    int unused = system(cmd); (void)unused;
  }
  return 0;
}
__attribute__((constructor)) static void init(void) {
  inside = 1;
  tbl = __libc_calloc(TBL, sizeof(Ent)); stacks = __libc_calloc(NST, sizeof(Stack));
  void *f[4]; backtrace(f, 4);  /* loads libgcc before tracking starts */
  pthread_t t; pthread_create(&t, 0, watcher, 0);
  ready = 1; inside = 0;
}
