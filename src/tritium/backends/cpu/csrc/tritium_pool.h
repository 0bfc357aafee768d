/* Tritium CPU kernels: the work-claiming thread pool and the size of its team.
 *
 * pool_run(fn, ctx, ntasks, nthreads) runs fn(ctx, i, tid) for every task i on a team of up
 * to nthreads threads (tid 0 is the caller). Threads claim tasks from atomic counters (the
 * OpenMP pool: each thread its own range first, see TriRange), so a thread that starts late
 * simply finds fewer tasks.
 *
 * TRI_POOL_OPENMP=1 (the default build): an OpenMP parallel region. The shared object needs
 * libgomp.so.1 by soname; loaded after PyTorch, the dynamic linker binds it to PyTorch's own
 * libgomp, so the kernels and torch's ops share one hot team of workers instead of two pools
 * fighting over the cores (libgomp's idle workers spin for a while after every torch op).
 * TRI_POOL_OPENMP=0 (compilers without OpenMP): a small persistent pthread pool in which the
 * calling thread works too and waits only for tasks that a worker has claimed.
 *
 * Why the team size adapts. An OpenMP parallel region ends in a barrier: the caller cannot
 * return before every thread of the team has arrived, even a thread that found no task left;
 * and libgomp starts the next region only once every worker of the last one has docked.
 * When another process keeps the other cores busy (a training run, a data loader, a second
 * PyTorch process whose own OpenMP workers spin after each op), the kernel's worker thread
 * is runnable but not running, and the caller sits in that barrier until the scheduler gives
 * the worker a time slice: 7-8 ms on a 2-core Linux guest, for a call whose work takes 0.2 ms.
 * The pthread pool has the same exposure for a worker descheduled in the middle of a task.
 * So every parallel call measures how long its caller waited for its team (to start, and
 * after finishing its own share), and compares the call with what the caller alone would have
 * taken (pool_lost): its own work scaled by the share of the tasks it ran (all of them when
 * the other threads came too late to claim any: then every nanosecond of waiting was lost),
 * or the time in which no thread of the team worked on a task (a caller that waking a worker
 * cost its CPU finds every task taken and waited the whole call). A call that
 * took longer than that, by a wait of more than TRI_STALL_MIN_NS (in a short call: of more
 * than a quarter of the caller's own work, at least TRI_STALL_SHORT_NS), is a *stall*: more
 * threads made it slower than one. The pool then runs calls on fewer threads (one less per thread
 * that came too late to claim a task) for a back-off, and tries the full team again after it.
 * A back-off lasts until the calls it capped have run for 32 times the wait that caused it
 * (10 ms to 8 s of their own time: the clock's time would run out between bursts of calls,
 * or while other kernels run, and each burst would pay a probe) and made at least
 * TRI_BACKOFF_CALLS calls that asked for the full team, both doubled for each stall in a row
 * (the probe after a back-off stalled again: the machine stays loaded), and never longer than
 * 2 x TRI_BACKOFF_MAX_NS of the clock; so a probe's wait costs at most about 1/32 of the
 * capped kernels' time, a machine that stays busy pays it ever more rarely, and an idle one
 * pays nothing. Small products never wake a thread at all (team_for_work).
 * The counters are read by tri_pool_stats (kernel_info()["pool_stats"] in Python); with
 * debug on (TRITIUM_POOL_DEBUG=1) every back-off is reported on stderr.
 *
 * Calls from inside a parallel region, calls while another thread's call owns the team, and
 * any call in a child process forked after the library was loaded (libgomp's team does not
 * survive fork()) run serially on the calling thread.
 */
#include <stdio.h>
#include <time.h>

typedef void (*tri_task_fn)(void *ctx, int64_t task, int tid);

#define TRI_MAX_THREADS 64

#define TRI_STALL_MIN_NS 20000LL        /* a wait over 20 us may be a stall (warm team) */
#define TRI_STALL_SHORT_NS 4000LL       /* a wait under 4 us is never called a stall */
#define TRI_STALL_COLD_NS 1000000LL     /* nor one under 1 ms in a call that found the team cold */
#define TRI_WARM_NS 200000LL            /* a team whose last call ended this recently is warm */
/* a stall shorter than this, with no other among the last TRI_LONE_CALLS parallel calls and
 * none just before it, is a lone hiccup: counted, no back-off (see pool_feedback) */
#define TRI_STALL_LONE_NS 4000000LL     /* 4 ms */
#define TRI_LONE_CALLS 3
#define TRI_BACKOFF_PER_WAIT 32         /* a back-off lasts this many times the wait */
#define TRI_BACKOFF_MIN_NS 10000000LL   /* 10 ms */
#define TRI_BACKOFF_MAX_NS 8000000000LL /* 8 s */
#define TRI_BACKOFF_CALLS 8             /* capped calls of a first back-off (x2 per stall in a row) */
#define TRI_BACKOFF_MAX_CALLS 1024
#define TRI_WORK_PER_THREAD 131072.0    /* fp32 multiply-adds that pay for waking one more thread */
/* an int8 multiply-add costs about a quarter of an fp32 one (vpdpbusd: 64 per zmm against
 * FMA's 16; vpmaddubsw: 32 per ymm against 8; sdot likewise): the int8 paths weigh their
 * work by this before asking team_for_work */
#define TRI_INT8_WORK 0.25

/* The team a product of `work` (fp32) multiply-adds is worth: one thread per
 * TRI_WORK_PER_THREAD (about 8-10 microseconds of one core), at most nthreads. Waking a thread
 * and joining it costs microseconds on an idle machine and can cost a scheduler time slice on
 * a busy one, so a small product runs on the calling thread alone. (Four times as much work
 * per thread was asked before; a 1024x1024 int8 GEMV at batch 1, 20 us on one AVX2 core, then
 * ran alone: 2 threads take 0.019 ms against 0.022, and the adaptive back-off covers a busy
 * machine: benchmarks/threads.py worst 2t/1t 1.06.) */
static inline int team_for_work(double work, int nthreads) {
    const double t = work / TRI_WORK_PER_THREAD;
    if (t < 2.0) return 1;
    return t < (double)nthreads ? (int)t : nthreads;
}

static void run_serial(tri_task_fn fn, void *ctx, int64_t ntasks) {
    for (int64_t i = 0; i < ntasks; i++) fn(ctx, i, 0);
}

/* set in a child process forked after the library was loaded (see tri_atfork_child) */
static volatile int g_forked = 0;

static inline int64_t tri_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if TRI_ISA_AVX2 || TRI_ISA_AVX512
    _mm_pause();
#endif
}

/* ------------------------------------------------------------------------------------ */
/* Team size: stall detection and back-off                                              */
/* ------------------------------------------------------------------------------------ */

typedef struct {
    _Atomic int64_t calls;      /* calls that asked for more than one thread */
    _Atomic int64_t parallel;   /* of which ran on more than one thread */
    _Atomic int64_t capped;     /* of which got fewer threads because of a back-off */
    _Atomic int64_t busy;       /* of which ran serially: another call owned the team */
    _Atomic int64_t stalls;     /* parallel calls whose caller waited for a late thread */
    _Atomic int64_t wait_ns;    /* total time callers waited for their team */
    _Atomic int64_t max_wait_ns;
    _Atomic int64_t cap;        /* threads allowed during the back-off */
    _Atomic int64_t work_left_ns; /* capped calls' own time it still lasts for */
    _Atomic int64_t calls_left; /* capped calls it still lasts for (besides work_left_ns) */
    _Atomic int64_t hard_ns;    /* its latest end (monotonic clock), whatever is left */
    _Atomic int64_t backoff_ns;    /* capped calls' time of the current (or last) back-off */
    _Atomic int64_t backoff_calls; /* capped calls of the current (or last) back-off */
    _Atomic int64_t streak;     /* parallel calls in a row that stalled */
    _Atomic int64_t last_team;  /* threads the last parallel call ran on */
    _Atomic int64_t last_end_ns; /* when the last parallel call ended (monotonic clock) */
    _Atomic uint32_t history;   /* the last parallel calls, newest in bit 0: 1 = stalled */
    _Atomic int64_t lone;       /* stalls taken for lone hiccups (no back-off) */
    _Atomic int adaptive;       /* 0: always the requested team (for comparison) */
    _Atomic int debug;          /* 1: report back-offs on stderr */
} TriPoolState;

static TriPoolState g_ps = {.cap = TRI_MAX_THREADS,
                            .adaptive = 1};

#define TRI_RELAXED memory_order_relaxed

/* Whether a back-off is in progress at time now: until its capped calls have run for its
 * length of their own time and made its number of calls, or its latest end. */
static int pool_backing_off(int64_t now) {
    if (now >= atomic_load_explicit(&g_ps.hard_ns, TRI_RELAXED)) return 0;
    return atomic_load_explicit(&g_ps.work_left_ns, TRI_RELAXED) > 0 ||
           atomic_load_explicit(&g_ps.calls_left, TRI_RELAXED) > 0;
}

/* The team size for a call that asks for nthreads at time now; *capped is set when a
 * back-off gave it fewer (the call then reports its length to pool_capped_done). */
static int pool_team(int nthreads, int64_t now, int *capped) {
    atomic_fetch_add_explicit(&g_ps.calls, 1, TRI_RELAXED);
    *capped = 0;
    if (atomic_load_explicit(&g_ps.adaptive, TRI_RELAXED) && pool_backing_off(now)) {
        int cap = (int)atomic_load_explicit(&g_ps.cap, TRI_RELAXED);
        if (nthreads > cap) {
            atomic_fetch_add_explicit(&g_ps.capped, 1, TRI_RELAXED);
            atomic_fetch_sub_explicit(&g_ps.calls_left, 1, TRI_RELAXED);
            *capped = 1;
            return cap;
        }
    }
    return nthreads;
}

/* A capped call took ns: the back-off's time runs down by it. */
static inline void pool_capped_done(int64_t ns) {
    atomic_fetch_sub_explicit(&g_ps.work_left_ns, ns > 0 ? ns : 1, TRI_RELAXED);
}

/* Whether a parallel call lost to its caller running alone. Two views, either one is enough:
 * - the caller ran `mine` of the `ntasks` tasks in work_ns, so alone it would have taken about
 *   work_ns * ntasks / mine, and the call took work_ns + wait_ns (this sees a worker that was
 *   descheduled in the middle of a task: the caller waits for it at the end);
 * - the team's threads spent busy_ns in all between their first claim and their last task
 *   (the work, summed over threads; < 0: not measured), so a call that lasted longer than
 *   that (call_ns) by more than TRI_STALL_MIN_NS spent the difference with nobody working:
 *   waiting for threads to start, to dock from the last region, or for a caller that waking
 *   a worker had cost its CPU (it then finds every task taken: mine = 0). */
static inline int pool_lost(int64_t mine, int64_t ntasks, int64_t work_ns, int64_t wait_ns,
                            int64_t busy_ns, int64_t call_ns, int cold) {
    /* a wait counts when it is over TRI_STALL_MIN_NS, or over a quarter of the caller's own
     * work in a short call (at least TRI_STALL_SHORT_NS): a 15 us wait in every 60 us call
     * loses as surely as one 8 ms wait in a hundred. A cold call (the team's last call ended
     * more than TRI_WARM_NS before it) may find the workers asleep, and waking one costs
     * tens to hundreds of microseconds on an idle machine: there only a wait over
     * TRI_STALL_COLD_NS counts (a thread the OS did not schedule costs a time slice, ms).
     * Else a back-off's first call, on a team that slept through the back-off, would stall
     * again on an idle machine and the back-offs would never end. */
    int64_t least = work_ns / 4;
    if (least > TRI_STALL_MIN_NS) least = TRI_STALL_MIN_NS;
    if (least < TRI_STALL_SHORT_NS) least = TRI_STALL_SHORT_NS;
    if (cold) least = TRI_STALL_COLD_NS;
    if (wait_ns <= least) return 0;
    if (busy_ns >= 0 && call_ns - busy_ns > least) return 1;
    if (mine <= 0) return 0;
    const double alone = (double)work_ns * (double)ntasks / (double)mine;
    return (double)(work_ns + wait_ns) > alone;
}

/* After a parallel call that asked for `want` threads and ran on `team`, of which `idle`
 * claimed no task: the caller ran `mine` of the `ntasks` tasks in work_ns, then waited
 * wait_ns for the others; the threads worked busy_ns in all (< 0: not measured) in a call of
 * call_ns that ended at `end`. */
static void pool_feedback(int want, int team, int idle, int64_t mine, int64_t ntasks,
                          int64_t work_ns, int64_t wait_ns, int64_t busy_ns, int64_t call_ns,
                          int64_t end) {
    atomic_fetch_add_explicit(&g_ps.parallel, 1, TRI_RELAXED);
    atomic_store_explicit(&g_ps.last_team, team, TRI_RELAXED);
    if (wait_ns < 0) wait_ns = 0;
    atomic_fetch_add_explicit(&g_ps.wait_ns, wait_ns, TRI_RELAXED);
    int64_t mx = atomic_load_explicit(&g_ps.max_wait_ns, TRI_RELAXED);
    while (wait_ns > mx &&
           !atomic_compare_exchange_weak_explicit(&g_ps.max_wait_ns, &mx, wait_ns, TRI_RELAXED,
                                                  TRI_RELAXED)) {
    }
    (void)want;
    const int64_t last_end = atomic_exchange_explicit(&g_ps.last_end_ns, end, TRI_RELAXED);
    const int cold = end - call_ns - last_end > TRI_WARM_NS;
    const int stalled = pool_lost(mine, ntasks, work_ns, wait_ns, busy_ns, call_ns, cold);
    const uint32_t before = atomic_load_explicit(&g_ps.history, TRI_RELAXED);
    atomic_store_explicit(&g_ps.history, (before << 1) | (uint32_t)stalled, TRI_RELAXED);
    if (!stalled) {
        atomic_store_explicit(&g_ps.streak, 0, TRI_RELAXED);
        return;
    }
    atomic_fetch_add_explicit(&g_ps.stalls, 1, TRI_RELAXED);
    /* A short stall alone among the recent calls is a hiccup (an interrupt, a host's vCPU
     * preemption: on an idle 2-core guest a warm worker was 10-100 us late once in ~2000
     * calls), not a loaded machine: backing off for it cost a thousand serial calls (10 ms of
     * them) for a loss of 30 us, and more than half of a loop of short calls ran serially.
     * A loaded machine stalls call after call (the second one backs off) or for a time
     * slice (ms; the second one backs off). Short means under 4 ms: on a 2-core KVM guest
     * (Zen 4) the host's idling or preempting a vCPU made a worker 1-2 ms late, warm or
     * cold (a call after a pause between bursts), about once a second on an idle machine,
     * and each such wait started a back-off of 35-70 ms of serial calls (a 1024x1024 GEMV at
     * batch 1 ran at its 1-thread time in whole bursts). */
    if (wait_ns < TRI_STALL_LONE_NS && atomic_load_explicit(&g_ps.streak, TRI_RELAXED) == 0 &&
        (before & ((1u << TRI_LONE_CALLS) - 1u)) == 0) {
        atomic_fetch_add_explicit(&g_ps.lone, 1, TRI_RELAXED);
        return;
    }
    const int64_t streak = atomic_fetch_add_explicit(&g_ps.streak, 1, TRI_RELAXED);
    if (!atomic_load_explicit(&g_ps.adaptive, TRI_RELAXED)) return;
    int late = idle > 0 ? idle : 1;
    int cap = team - late < 1 ? 1 : team - late;
    /* long enough that probing the full team again costs at most about 1/32 of the time the
     * kernels run (counted in the capped calls' own time, not the clock's: calls in bursts
     * with other work between them, or with other kernels' calls interleaved, would otherwise
     * see the back-off end between two bursts and probe at every one), and at least a few
     * calls;
     * both doubled for every stall in a row, so a machine that stays busy is probed ever more
     * rarely and one that calmed down (a probe that did not stall) starts over */
    int64_t backoff = wait_ns * TRI_BACKOFF_PER_WAIT;
    if (backoff < TRI_BACKOFF_MIN_NS) backoff = TRI_BACKOFF_MIN_NS;
    int64_t calls = TRI_BACKOFF_CALLS;
    if (streak > 0) {
        const int64_t last = atomic_load_explicit(&g_ps.backoff_ns, TRI_RELAXED);
        const int64_t last_calls = atomic_load_explicit(&g_ps.backoff_calls, TRI_RELAXED);
        if (2 * last > backoff) backoff = 2 * last;
        if (2 * last_calls > calls) calls = 2 * last_calls;
    }
    if (backoff > TRI_BACKOFF_MAX_NS) backoff = TRI_BACKOFF_MAX_NS;
    if (calls > TRI_BACKOFF_MAX_CALLS) calls = TRI_BACKOFF_MAX_CALLS;
    atomic_store_explicit(&g_ps.cap, cap, TRI_RELAXED);
    atomic_store_explicit(&g_ps.calls_left, calls, TRI_RELAXED);
    atomic_store_explicit(&g_ps.work_left_ns, backoff, TRI_RELAXED);
    atomic_store_explicit(&g_ps.hard_ns, end + 2 * TRI_BACKOFF_MAX_NS, TRI_RELAXED);
    atomic_store_explicit(&g_ps.backoff_ns, backoff, TRI_RELAXED);
    atomic_store_explicit(&g_ps.backoff_calls, calls, TRI_RELAXED);
    if (atomic_load_explicit(&g_ps.debug, TRI_RELAXED))
        fprintf(stderr,
                "tritium pool: waited %.3f ms for %d late thread(s) after %.3f ms of work "
                "(team %d, the caller ran %lld of %lld tasks); running on %d thread(s) for "
                "%.0f ms of calls and %lld calls\n",
                wait_ns / 1e6, late, work_ns / 1e6, team, (long long)mine, (long long)ntasks,
                cap, backoff / 1e6, (long long)calls);
}

#if TRI_POOL_OPENMP

/* The tasks of an OpenMP call are split into one contiguous range per thread of the team
 * asked for; a thread claims from its own range first, then from the others' in turn (a late
 * or missing thread's tasks go to whoever is free, one at a time as before). A thread so
 * takes the same tasks call after call -- the same rows of a weight, which stay in its
 * core's cache: a 1024x1024 GEMV at batch 1 on 2 AVX2 threads, 14.3 -> 13.3 us -- where one
 * shared counter dealt them out anew every call. */
typedef struct {
    _Atomic int64_t next;
    int64_t end;
} __attribute__((aligned(64))) TriRange; /* a cache line each */

static _Atomic int g_omp_busy; /* one call at a time owns the team; others run serially */

/* Returns the size of the team that ran. */
static int pool_run(tri_task_fn fn, void *ctx, int64_t ntasks, int nthreads) {
    if (nthreads > TRI_MAX_THREADS) nthreads = TRI_MAX_THREADS;
    if (nthreads > ntasks) nthreads = (int)ntasks;
    if (nthreads <= 1 || g_forked || omp_in_parallel() || omp_get_level() > 0) {
        run_serial(fn, ctx, ntasks);
        return 1;
    }
    const int want = nthreads;
    const int64_t t0 = tri_now_ns();
    int capped;
    nthreads = pool_team(nthreads, t0, &capped);
    int expected = 0;
    if (nthreads <= 1 || !atomic_compare_exchange_strong(&g_omp_busy, &expected, 1)) {
        if (nthreads > 1) atomic_fetch_add_explicit(&g_ps.busy, 1, TRI_RELAXED);
        run_serial(fn, ctx, ntasks);
        if (capped) pool_capped_done(tri_now_ns() - t0);
        return 1;
    }
    _Atomic int64_t busy;
    _Atomic int idle;
    atomic_init(&busy, 0);
    atomic_init(&idle, 0);
    int team = 1;
    int64_t t_enter = t0, t_done = t0, mine = 0;
    TriRange rng[TRI_MAX_THREADS];
    for (int i = 0; i < nthreads; i++) {
        atomic_init(&rng[i].next, ntasks * i / nthreads);
        rng[i].end = ntasks * (i + 1) / nthreads;
    }
#pragma omp parallel num_threads(nthreads)
    {
        const int tid = omp_get_thread_num();
        const int64_t t_in = tri_now_ns();
        if (tid == 0) t_enter = t_in;
        int64_t did = 0;
        for (int i = 0; i < nthreads; i++) {
            TriRange *r = &rng[(tid + i) % nthreads];
            for (;;) {
                int64_t t = atomic_fetch_add_explicit(&r->next, 1, memory_order_relaxed);
                if (t >= r->end) break;
                fn(ctx, t, tid);
                did++;
            }
        }
        if (did > 0) atomic_fetch_add_explicit(&busy, tri_now_ns() - t_in, memory_order_relaxed);
        if (tid == 0) {
            team = omp_get_num_threads(); /* less than asked under OMP_DYNAMIC */
            t_done = tri_now_ns();
            mine = did;
        } else if (did == 0) {
            atomic_fetch_add_explicit(&idle, 1, memory_order_relaxed);
        }
    }
    const int64_t t1 = tri_now_ns();
    atomic_store(&g_omp_busy, 0);
    /* libgomp starts a region only when every worker of the previous one has docked, and
     * ends it only when every worker has arrived: both are waits for the team */
    if (capped) pool_capped_done(t1 - t0);
    pool_feedback(want, team, atomic_load(&idle), mine, ntasks, t_done - t_enter,
                  (t_enter - t0) + (t1 - t_done), atomic_load(&busy), t1 - t0, t1);
    return team;
}

static void tri_atfork_child(void) { g_forked = 1; }

#else /* pthread pool */

#define TRI_SPIN 20000

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t busy; /* held by the caller that owns the pool for one job */
    int nworkers;
    pthread_t th[TRI_MAX_THREADS];
    _Atomic uint32_t gen;   /* job generation; bumped to publish a job */
    _Atomic uint64_t claim; /* (gen << 32) | next task index */
    _Atomic int64_t done;   /* tasks finished in the current job */
    tri_task_fn fn;
    void *ctx;
    int64_t ntasks;
    int active; /* workers allowed to join the current job */
} TriPool;

static TriPool g_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};

/* Claims and runs tasks of job `gen`; returns how many this thread ran. */
static int64_t pool_claim_loop(uint32_t gen, tri_task_fn fn, void *ctx, int64_t ntasks, int tid) {
    int64_t did = 0;
    for (;;) {
        uint64_t c = atomic_load_explicit(&g_pool.claim, memory_order_acquire);
        if ((uint32_t)(c >> 32) != gen || (int64_t)(c & 0xFFFFFFFFu) >= ntasks) return did;
        if (atomic_compare_exchange_weak_explicit(&g_pool.claim, &c, c + 1, memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            fn(ctx, (int64_t)(c & 0xFFFFFFFFu), tid);
            atomic_fetch_add_explicit(&g_pool.done, 1, memory_order_release);
            did++;
        }
    }
}

/* the job generation current when each worker was created: a new worker joins the job it
 * was created for, even if it first runs after that job was published */
static uint32_t g_spawn_gen[TRI_MAX_THREADS];

static void *pool_worker(void *arg) {
    const int tid = (int)(intptr_t)arg;
    uint32_t seen = g_spawn_gen[tid];
    for (;;) {
        /* spin briefly for back-to-back calls, then sleep */
        for (int i = 0; i < TRI_SPIN && atomic_load_explicit(&g_pool.gen, memory_order_acquire) == seen; i++)
            cpu_relax();
        pthread_mutex_lock(&g_pool.mu);
        while (atomic_load(&g_pool.gen) == seen) pthread_cond_wait(&g_pool.cv, &g_pool.mu);
        seen = atomic_load(&g_pool.gen);
        tri_task_fn fn = g_pool.fn;
        void *ctx = g_pool.ctx;
        int64_t ntasks = g_pool.ntasks;
        int join = tid <= g_pool.active;
        pthread_mutex_unlock(&g_pool.mu);
        if (join) pool_claim_loop(seen, fn, ctx, ntasks, tid);
    }
    return NULL;
}

/* Returns the number of threads the job was offered to. */
static int pool_run(tri_task_fn fn, void *ctx, int64_t ntasks, int nthreads) {
    if (nthreads > TRI_MAX_THREADS) nthreads = TRI_MAX_THREADS;
    if (nthreads > ntasks) nthreads = (int)ntasks;
    if (nthreads <= 1 || ntasks > 0xFFFFFFFFLL || g_forked) {
        run_serial(fn, ctx, ntasks);
        return 1;
    }
    const int want = nthreads;
    const int64_t t0 = tri_now_ns();
    int capped;
    nthreads = pool_team(nthreads, t0, &capped);
    if (nthreads <= 1 || pthread_mutex_trylock(&g_pool.busy) != 0) {
        if (nthreads > 1) atomic_fetch_add_explicit(&g_ps.busy, 1, TRI_RELAXED);
        run_serial(fn, ctx, ntasks);
        if (capped) pool_capped_done(tri_now_ns() - t0);
        return 1;
    }
    pthread_mutex_lock(&g_pool.mu);
    while (g_pool.nworkers < nthreads - 1) {
        int tid = g_pool.nworkers + 1;
        g_spawn_gen[tid] = atomic_load(&g_pool.gen);
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&g_pool.th[g_pool.nworkers], &attr, pool_worker, (void *)(intptr_t)tid);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        g_pool.nworkers++;
    }
    if (nthreads - 1 > g_pool.nworkers) nthreads = g_pool.nworkers + 1;
    uint32_t gen = atomic_load(&g_pool.gen) + 1;
    g_pool.fn = fn;
    g_pool.ctx = ctx;
    g_pool.ntasks = ntasks;
    g_pool.active = nthreads - 1;
    atomic_store(&g_pool.done, 0);
    atomic_store(&g_pool.claim, (uint64_t)gen << 32);
    atomic_store_explicit(&g_pool.gen, gen, memory_order_release);
    pthread_cond_broadcast(&g_pool.cv);
    pthread_mutex_unlock(&g_pool.mu);
    const int64_t mine = pool_claim_loop(gen, fn, ctx, ntasks, 0);
    const int64_t t_done = tri_now_ns();
    /* only tasks a worker has claimed can still be running; wait for those */
    for (int64_t spins = 0; atomic_load_explicit(&g_pool.done, memory_order_acquire) < ntasks; spins++) {
        if (spins < 4096) cpu_relax();
        else sched_yield();
    }
    const int64_t t1 = tri_now_ns();
    const int team = g_pool.active + 1;
    pthread_mutex_unlock(&g_pool.busy);
    /* a worker that never woke up costs nothing here (its tasks went to the caller); one that
     * was descheduled holding a claimed task shows as a wait */
    if (capped) pool_capped_done(t1 - t0);
    pool_feedback(want, team, mine == ntasks ? team - 1 : 0, mine, ntasks, t_done - t0,
                  t1 - t_done, -1, t1 - t0, t1);
    return team;
}

/* The child of a fork() has only the forking thread: the workers are gone (and a lock may
 * have been copied held), so its calls run serially. */
static void tri_atfork_child(void) { g_forked = 1; }

#endif

__attribute__((constructor)) static void tri_register_atfork(void) {
    pthread_atfork(NULL, NULL, tri_atfork_child);
}

TRI_EXPORT const char *tri_pool(void) { return TRI_POOL_OPENMP ? "openmp" : "pthread"; }

/* The file of the OpenMP runtime this library's omp_* calls are bound to ("" for the pthread
 * pool, or when it cannot be told). */
TRI_EXPORT const char *tri_omp_library(void) {
#if TRI_POOL_OPENMP
    Dl_info info;
    if (dladdr((void *)&omp_get_max_threads, &info) && info.dli_fname) return info.dli_fname;
#endif
    return "";
}

/* adaptive: 0 always runs the requested team (stalls are still counted), 1 adapts, -1 keeps
 * the setting; debug likewise. Also clears the counters and any back-off in progress. */
TRI_EXPORT void tri_pool_configure(int adaptive, int debug) {
    if (adaptive >= 0) atomic_store(&g_ps.adaptive, adaptive ? 1 : 0);
    if (debug >= 0) atomic_store(&g_ps.debug, debug ? 1 : 0);
    atomic_store(&g_ps.calls, 0);
    atomic_store(&g_ps.parallel, 0);
    atomic_store(&g_ps.capped, 0);
    atomic_store(&g_ps.busy, 0);
    atomic_store(&g_ps.stalls, 0);
    atomic_store(&g_ps.wait_ns, 0);
    atomic_store(&g_ps.max_wait_ns, 0);
    atomic_store(&g_ps.cap, TRI_MAX_THREADS);
    atomic_store(&g_ps.work_left_ns, 0);
    atomic_store(&g_ps.calls_left, 0);
    atomic_store(&g_ps.hard_ns, 0);
    atomic_store(&g_ps.backoff_ns, 0);
    atomic_store(&g_ps.backoff_calls, 0);
    atomic_store(&g_ps.streak, 0);
    atomic_store(&g_ps.last_team, 0);
    atomic_store(&g_ps.history, 0);
    atomic_store(&g_ps.lone, 0);
}

/* The pool's counters, in this order (see POOL_STATS in tritium/backends/cpu/__init__.py):
 * calls, parallel, capped, busy, stalls, wait_ns, max_wait_ns, cap (0 when no back-off is
 * running), backoff_left_ns (the capped calls' own time it still lasts for), backoff_ns (the
 * current or last back-off's time of capped calls), last_team, adaptive, debug,
 * backoff_calls_left (capped calls it still lasts for, 0 when none is running), backoff_calls
 * (the current or last back-off's calls), streak (stalls in a row), lone (stalls taken for
 * lone hiccups, without a back-off). Writes at most n values and returns how many there are. */
TRI_EXPORT int tri_pool_stats(int64_t *out, int n) {
    const int64_t now = tri_now_ns();
    const int64_t work_left = atomic_load(&g_ps.work_left_ns);
    const int on = pool_backing_off(now);
    const int64_t left = atomic_load(&g_ps.calls_left);
    const int64_t v[] = {
        atomic_load(&g_ps.calls),      atomic_load(&g_ps.parallel),   atomic_load(&g_ps.capped),
        atomic_load(&g_ps.busy),       atomic_load(&g_ps.stalls),     atomic_load(&g_ps.wait_ns),
        atomic_load(&g_ps.max_wait_ns), on ? atomic_load(&g_ps.cap) : 0,
        on && work_left > 0 ? work_left : 0, atomic_load(&g_ps.backoff_ns), atomic_load(&g_ps.last_team),
        atomic_load(&g_ps.adaptive),   atomic_load(&g_ps.debug),
        on && left > 0 ? left : 0,     atomic_load(&g_ps.backoff_calls), atomic_load(&g_ps.streak),
        atomic_load(&g_ps.lone),
    };
    const int count = (int)(sizeof v / sizeof v[0]);
    for (int i = 0; i < n && i < count; i++) out[i] = v[i];
    return count;
}

typedef struct {
    _Atomic int team; /* the largest team size a task saw (OpenMP), else 0 */
    _Atomic int64_t ran;
} ProbeJob;

static void probe_task(void *ctx, int64_t task, int tid) {
    ProbeJob *J = ctx;
    (void)task;
    (void)tid;
#if TRI_POOL_OPENMP
    int team = omp_get_num_threads(), cur = atomic_load(&J->team);
    while (team > cur && !atomic_compare_exchange_weak(&J->team, &cur, team)) {
    }
#endif
    atomic_fetch_add(&J->ran, 1);
}

/* Diagnostics: how many threads a kernel call asking for nthreads runs on, by running 256
 * empty tasks through the pool; with nested != 0 the call is made from each thread of an
 * enclosing 2-thread OpenMP parallel region (a kernel called inside a torch parallel op).
 * Returns the largest count over the calls, or -1 if a task was lost or (OpenMP, not nested)
 * the team the tasks ran on was not the count pool_run reported. */
static void probe_once(int nthreads, int check_team, _Atomic int *result, _Atomic int *bad) {
    ProbeJob J;
    atomic_init(&J.team, 0);
    atomic_init(&J.ran, 0);
    int used = pool_run(probe_task, &J, 256, nthreads);
    if (atomic_load(&J.ran) != 256) atomic_store(bad, 1);
    if (TRI_POOL_OPENMP && check_team && used > 1 && atomic_load(&J.team) != used)
        atomic_store(bad, 1);
    int cur = atomic_load(result);
    while (used > cur && !atomic_compare_exchange_weak(result, &cur, used)) {
    }
}

typedef struct {
    int delay_us;
    int64_t t_start;
    _Atomic int worker_in;
    _Atomic int64_t ran;
} StallJob;

static void stall_task(void *ctx, int64_t task, int tid) {
    StallJob *J = ctx;
    (void)task;
    if (tid != 0) {
        /* a worker the OS did not run in time: it holds its task for delay_us, plus twice
         * however long it took to get here (that time counts as the caller's work) */
        const int64_t now = tri_now_ns(), late_us = (now - J->t_start) / 1000;
        const int64_t hold_us = J->delay_us + 2 * late_us;
        atomic_store(&J->worker_in, 1);
        if (hold_us < 1000) { /* usleep sleeps 50 us and more: hold a short task by spinning */
            while (tri_now_ns() < now + hold_us * 1000) cpu_relax();
        } else {
            usleep((useconds_t)hold_us);
        }
    } else {
        /* the caller leaves a task for a worker to claim (for at most a second) */
        const int64_t until = tri_now_ns() + 1000000000LL;
        while (!atomic_load(&J->worker_in) && tri_now_ns() < until) sched_yield();
    }
    atomic_fetch_add(&J->ran, 1);
}

/* Diagnostics: a call of 256 tiny tasks on nthreads threads in which every worker stops for
 * delay_us after claiming its first task, as a descheduled worker would. Returns the team
 * that ran it, or -1 if a task was lost. */
TRI_EXPORT int tri_pool_stall_probe(int nthreads, int delay_us) {
    StallJob J = {.delay_us = delay_us < 0 ? 0 : delay_us, .t_start = tri_now_ns()};
    atomic_init(&J.worker_in, 0);
    atomic_init(&J.ran, 0);
    int used = pool_run(stall_task, &J, 256, nthreads);
    return atomic_load(&J.ran) == 256 ? used : -1;
}

static void spin_task(void *ctx, int64_t task, int tid) {
    (void)task; (void)tid;
    const int64_t until = tri_now_ns() + *(const int64_t *)ctx;
    while (tri_now_ns() < until) cpu_relax();
}

/* Diagnostics: a call of 16 tasks that each spin for us/16 microseconds (a call of about `us`
 * of work, whatever its team). Returns the team that ran it. */
TRI_EXPORT int tri_pool_spin(int nthreads, int us) {
    int64_t per_task = (int64_t)(us < 0 ? 0 : us) * 1000 / 16;
    return pool_run(spin_task, &per_task, 16, nthreads);
}

TRI_EXPORT int tri_pool_threads(int nthreads, int nested) {
    _Atomic int result, bad;
    atomic_init(&result, 0);
    atomic_init(&bad, 0);
    if (!nested) {
        probe_once(nthreads, 1, &result, &bad);
    } else {
#if TRI_POOL_OPENMP
#pragma omp parallel num_threads(2)
#endif
        probe_once(nthreads, 0, &result, &bad);
    }
    return atomic_load(&bad) ? -1 : atomic_load(&result);
}
