/* Work items of spikecim's CPU kernels over threads: run_items(args, one, items, threads)
 * calls one(args, i) for every i in [0, items), each exactly once, in any order.
 *
 * Items are handed out one at a time, so a thread that the OS delays (a busy or shared
 * machine) leaves its work to the others. Built with OpenMP (-fopenmp), the items run on the
 * OpenMP threads torch keeps awake (the CPU wheel's libgomp is the one loaded, once per
 * process); otherwise on pthreads started for the call, the caller working too. One thread,
 * or one item, runs in the caller without any. Included by each kernel file (cbuild hashes
 * this header into every build key).
 */
#ifndef SPIKECIM_PARALLEL_H
#define SPIKECIM_PARALLEL_H

#include <stdint.h>

#define PARALLEL_MAX_THREADS 64

typedef void (*item_fn)(const void *args, int64_t item);

#ifdef _OPENMP
static void run_items(const void *args, item_fn one, int64_t items, int threads) {
    if (threads > items) threads = (int)items;
    if (threads <= 1) {
        for (int64_t i = 0; i < items; i++) one(args, i);
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t i = 0; i < items; i++) one(args, i);
}
#else
#include <pthread.h>

typedef struct {
    const void *args;
    item_fn one;
    int64_t items, next; /* next: the next item to take (atomic) */
} item_pool;

static void *take_items(void *p) {
    item_pool *q = (item_pool *)p;
    for (;;) {
        const int64_t i = __atomic_fetch_add(&q->next, 1, __ATOMIC_RELAXED);
        if (i >= q->items) return 0;
        q->one(q->args, i);
    }
}

static void run_items(const void *args, item_fn one, int64_t items, int threads) {
    item_pool q = {args, one, items, 0};
    if (threads > items) threads = (int)items;
    if (threads > PARALLEL_MAX_THREADS) threads = PARALLEL_MAX_THREADS;
    pthread_t tid[PARALLEL_MAX_THREADS];
    int started[PARALLEL_MAX_THREADS] = {0};
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&tid[t], 0, take_items, &q) == 0;
    take_items(&q); /* the caller works too; items a thread could not take are done here */
    for (int t = 1; t < threads; t++)
        if (started[t]) pthread_join(tid[t], 0);
}
#endif

#endif
