/* Tritium CPU kernels: ternary packing (t2, t1.6) and ternary GEMM/GEMV.
 *
 * One translation unit, specialized by the prelude that build.py prepends (see
 * tritium_kernels.h). The int8 path is exact: the weights are stored as codes c = trit + 1
 * in {0, 1, 2}, so  sum_k xq[k] * trit[k] = sum_k xq[k] * c[k] - sum_k xq[k]; the first sum
 * is an unsigned-by-signed byte product (maddubs / dpbusd) that never saturates because
 * |c * xq| <= 2 * 127. The fp32 path decodes a tile of rows to floats once and reuses it
 * for a chunk of tokens with an FMA micro-kernel.
 *
 * Threads: the work-claiming pool of tritium_pool.h (an OpenMP team shared with PyTorch, or a
 * pthread pool), whose team shrinks for a while when a thread of it was not scheduled in time.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>
#include <dlfcn.h>
#if TRI_POOL_OPENMP
#include <omp.h>
#endif
#if TRI_ISA_AVX2 || TRI_ISA_AVX512
#include <immintrin.h>
#endif
#if TRI_ISA_NEON
#include <arm_neon.h>
#endif

#define TRI_ABI_VERSION 11

TRI_EXPORT const char *tri_isa(void) {
#if TRI_ISA_AVX512
    return "avx512";
#elif TRI_ISA_AVX2
    return "avx2";
#elif TRI_ISA_NEON
    return "neon";
#else
    return "scalar";
#endif
}

TRI_EXPORT int tri_abi_version(void) { return TRI_ABI_VERSION; }

static inline int64_t blk_elems(int fmt) { return fmt == TRI_FMT_T2 ? TRI_T2_BLOCK : TRI_T16_BLOCK; }
static inline int64_t n_blocks(int fmt, int64_t k) { return (k + blk_elems(fmt) - 1) / blk_elems(fmt); }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static void *tri_alloc(size_t bytes) {
    void *p = NULL;
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    return p;
}

/* Scratch buffers a thread keeps between calls: what a call needs only while it runs (the
 * quantized activations, a chain's intermediate rows, a GEMM's tile of sums) was allocated
 * and freed by every call; at a batch of 64 on the digits MLP that was 7% of the call (and a
 * 64 KB block freed makes glibc consolidate its heap). scratch_get(slot, bytes) returns the
 * calling thread's buffer of that slot, grown to at least `bytes` (its contents are not
 * kept), or NULL when out of memory; scratch_put(p, bytes) ends the use. A buffer over
 * TRI_SCRATCH_KEEP bytes is not kept: scratch_get allocates it and scratch_put frees it, from
 * any thread, so a thread holds at most TRI_SCRATCH_SLOTS x TRI_SCRATCH_KEEP bytes between
 * calls, and frees them when it exits. No user of a slot calls code that takes the same
 * slot on the same thread while it holds it (TILE: the G2 GEMMs' and the int8_image conv's
 * tasks, which never nest). */
enum { TRI_SCRATCH_XQ, TRI_SCRATCH_SX, TRI_SCRATCH_SUMX, TRI_SCRATCH_CHAIN, TRI_SCRATCH_TILE,
       TRI_SCRATCH_WBUF, TRI_SCRATCH_C8_Q, TRI_SCRATCH_C8_F, TRI_SCRATCH_C8_IMG,
       TRI_SCRATCH_SLOTS };
#define TRI_SCRATCH_KEEP ((size_t)1 << 20)

typedef struct {
    void *p[TRI_SCRATCH_SLOTS];
    size_t cap[TRI_SCRATCH_SLOTS];
    int registered;
} TriScratch;

static __thread TriScratch t_scratch;
static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;
static int g_scratch_key_ok;

static void scratch_release(void *arg) {
    TriScratch *S = arg;
    for (int i = 0; i < TRI_SCRATCH_SLOTS; i++) {
        free(S->p[i]);
        S->p[i] = NULL;
        S->cap[i] = 0;
    }
}

static void scratch_key_init(void) { g_scratch_key_ok = pthread_key_create(&g_scratch_key, scratch_release) == 0; }

static void *scratch_get(int slot, size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (bytes > TRI_SCRATCH_KEEP) return tri_alloc(bytes);
    TriScratch *S = &t_scratch;
    if (!S->registered) { /* the buffers are freed when the thread exits (when the key
                             * cannot be made, they stay: never freed while in use) */
        pthread_once(&g_scratch_once, scratch_key_init);
        if (g_scratch_key_ok) pthread_setspecific(g_scratch_key, S);
        S->registered = 1;
    }
    if (S->cap[slot] < bytes) {
        free(S->p[slot]);
        S->p[slot] = tri_alloc(bytes);
        S->cap[slot] = S->p[slot] ? bytes : 0;
    }
    return S->p[slot];
}

/* The end of a use of scratch_get(slot, bytes)'s buffer p, on any thread: frees it when it
 * was not kept (the decision is the size's alone, so it holds whichever thread got it). */
static void scratch_put(void *p, size_t bytes) {
    if (bytes > TRI_SCRATCH_KEEP) free(p);
}


#include "tritium_pool.h"

static inline void atomic_min64(_Atomic int64_t *a, int64_t v) {
    int64_t cur = atomic_load(a);
    while (v < cur && !atomic_compare_exchange_weak(a, &cur, v)) {
    }
}

#include "tritium_pack.h"
#include "tritium_epilogue.h"

/* ------------------------------------------------------------------------------------ */
/* ISA micro-kernels                                                                    */
/*   decode_codes: packed row -> uint8 codes (0..2), nb * block elements                */
/*   i8_dot4x1 / i8_dot4x2: sum codes * xq over kpad for 4 code rows x 1 or 2 tokens   */
/*   f32_dot4x1 / f32_dot4x2: sum wf * x over k for 4 float rows x 1 or 2 tokens       */
/*   gemv_direct4 (SIMD only): int8 GEMV that decodes the packed bytes in registers     */
/* ------------------------------------------------------------------------------------ */

__attribute__((unused)) static void decode_codes_scalar(int fmt, const uint8_t *w, int64_t nb, uint8_t *c) {
    if (fmt == TRI_FMT_T2) {
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *s = w + b * 32;
            uint8_t *d = c + b * TRI_T2_BLOCK;
            for (int j = 0; j < 32; j++) {
                uint8_t v = s[j];
                d[j] = v & 3; d[j + 32] = (v >> 2) & 3; d[j + 64] = (v >> 4) & 3; d[j + 96] = v >> 6;
            }
        }
    } else {
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *s = w + b * 32;
            uint8_t *d = c + b * TRI_T16_BLOCK;
            for (int j = 0; j < 32; j++) {
                uint32_t f = (uint32_t)s[j] * 270u, t;
                t = f * 3u; d[j] = (uint8_t)(t >> 16); f = t & 0xFFFFu;
                t = f * 3u; d[j + 32] = (uint8_t)(t >> 16); f = t & 0xFFFFu;
                t = f * 3u; d[j + 64] = (uint8_t)(t >> 16); f = t & 0xFFFFu;
                t = f * 3u; d[j + 96] = (uint8_t)(t >> 16); f = t & 0xFFFFu;
                t = f * 3u; d[j + 128] = (uint8_t)(t >> 16);
            }
        }
    }
}

#if TRI_ISA_AVX2 || TRI_ISA_AVX512
#include "tritium_x86.h" /* the AVX2 / AVX-512 micro-kernels */

#elif TRI_ISA_NEON
#include "tritium_neon.h" /* the NEON micro-kernels (build.py renders it inline) */

#else /* portable C (TRI_ISA_SCALAR) */
#include "tritium_scalar.h" /* the portable C micro-kernels */
#endif
#ifndef TRI_F32_XPERM
#define TRI_F32_XPERM 0 /* the fp32 GEMV reads x in its own order (tritium_x86.h: AVX2 does not) */
#endif

#include "tritium_driver.h"
#include "tritium_f32p.h" /* the fp32-activation panel GEMM for batches of tokens */
#include "tritium_g2avx2.h" /* the int8 batch GEMM of the AVX2 path */
#include "tritium_g2.h"


/* The AVX2 fp32 GEMV's order of x (fma_codes32_xperm, tritium_x86.h): within each group of 32,
 * positions 8q..8q+3 take x[4q..4q+3] and 8q+4..8q+7 take x[16+4q..16+4q+3] (q = 0..3), the
 * order in which four vpshufb spread a 128-bit lane's 16 codes over dwords. Done in place on
 * the m zero-padded rows (kpad a multiple of 32, stride ldx) when every |x| is below
 * 1e38 / (2 k): that GEMV sums 2x (its products are x times +-2.0, exact), which must stay
 * finite; 0 (rows left in order, the plain GEMV runs) for larger, infinite or NaN values. */
static int f32_xperm_rows(float *xp, int64_t m, int64_t k, int64_t kpad, int64_t ldx) {
    const float limit = (float)(1e38 / (2.0 * (double)(k > 0 ? k : 1)));
    for (int64_t t = 0; t < m; t++) {
        const float *r = xp + t * ldx;
        int ok = 1;
        for (int64_t i = 0; i < k; i++) ok &= fabsf(r[i]) < limit; /* NaN: not below */
        if (!ok) return 0;
    }
    for (int64_t t = 0; t < m; t++) {
        float *r = xp + t * ldx, g[32];
        for (int64_t b = 0; b < kpad; b += 32) {
            memcpy(g, r + b, sizeof g);
            for (int q = 0; q < 4; q++)
                for (int j = 0; j < 4; j++) {
                    r[b + 8 * q + j] = g[4 * q + j];
                    r[b + 8 * q + 4 + j] = g[16 + 4 * q + j];
                }
        }
    }
    return 1;
}

TRI_EXPORT int tri_linear(const float *x, int64_t m, int64_t k, const uint8_t *w, int64_t n,
                          int64_t row_bytes, int fmt, const float *scale, int64_t nscale,
                          const float *bias, const float *residual, int act, int act_quant,
                          float *y, int nthreads, const uint8_t *gw) {
    Problem P;
    memset(&P, 0, sizeof P);
    P.m = m; P.k = k; P.n = n; P.row_bytes = row_bytes; P.fmt = fmt; P.w = w; P.y = y;
    P.nb = n_blocks(fmt, k);
    P.kpad = P.nb * blk_elems(fmt);
    P.ldx = P.kpad + 64;
    P.epi.scale = scale; P.epi.nscale = nscale; P.epi.bias = bias; P.epi.residual = residual;
    P.epi.act = act;
    if (m == 0 || n == 0) return 0;
    if (!act_quant) {
        P.x = x;
        /* direct fp32 GEMV (decode per token) beats the decoded-tile path up to 3 tokens */
        if (!TRI_HAVE_DIRECT || m > 3)
            return f32p_fits(&P) ? run_f32p(&P, nthreads) : run_problem(&P, nthreads);
        float *xp = tri_alloc((size_t)(m * P.ldx) * sizeof(float));
        if (!xp) return 1;
        for (int64_t t = 0; t < m; t++) {
            memcpy(xp + t * P.ldx, x + t * k, (size_t)k * sizeof(float));
            memset(xp + t * P.ldx + k, 0, (size_t)(P.ldx - k) * sizeof(float));
        }
        P.xpad = xp;
        P.xperm = TRI_F32_XPERM && f32_xperm_rows(xp, m, k, P.kpad, P.ldx);
        int rc = run_problem(&P, nthreads);
        free(xp);
        return rc;
    }
    const int g2 = TRI_HAVE_G2 && m >= TRI_GEMM_MIN_M;
    if (g2) P.ldx = g2_xq_stride(k);
    const size_t xq_bytes = (size_t)(m * P.ldx), s_bytes = (size_t)m * sizeof(float);
    int8_t *xq = scratch_get(TRI_SCRATCH_XQ, xq_bytes);
    float *sx = scratch_get(TRI_SCRATCH_SX, s_bytes);
    int32_t *sumx = scratch_get(TRI_SCRATCH_SUMX, s_bytes);
    int err = 1;
    if (xq && sx && sumx) {
        quantize_all(x, m, k, xq, P.ldx, sx, sumx, nthreads);
        P.xq = xq; P.sx = sx; P.sumx = sumx;
        err = g2 ? run_g2(&P, gw, nthreads) : run_problem(&P, nthreads);
    }
    scratch_put(xq, xq_bytes); scratch_put(sx, s_bytes); scratch_put(sumx, s_bytes);
    return err;
}

TRI_EXPORT int tri_gemm_i8(const int8_t *xq, int64_t m, int64_t k, const uint8_t *w, int64_t n,
                           int64_t row_bytes, int fmt, int32_t *y, int nthreads) {
    Problem P;
    memset(&P, 0, sizeof P);
    P.m = m; P.k = k; P.n = n; P.row_bytes = row_bytes; P.fmt = fmt; P.w = w; P.yi = y;
    P.nb = n_blocks(fmt, k);
    P.kpad = P.nb * blk_elems(fmt);
    P.ldx = P.kpad + 64;
    if (m == 0 || n == 0) return 0;
    int8_t *xp = tri_alloc((size_t)(m * P.ldx));
    int32_t *sumx = tri_alloc((size_t)m * sizeof(int32_t));
    int err = 1;
    if (xp && sumx) {
        const int64_t kpad = P.ldx;
        for (int64_t t = 0; t < m; t++) {
            int32_t s = 0;
            for (int64_t i = 0; i < k; i++) { xp[t * kpad + i] = xq[t * k + i]; s += xq[t * k + i]; }
            for (int64_t i = k; i < kpad; i++) xp[t * kpad + i] = 0;
            sumx[t] = s;
        }
        P.xq = xp; P.sumx = sumx;
        err = TRI_HAVE_G2 && m >= TRI_GEMM_MIN_M ? run_g2(&P, NULL, nthreads) : run_problem(&P, nthreads);
    }
    free(xp); free(sumx);
    return err;
}

TRI_EXPORT int tri_linear_planned(const TriLinearPlan *p, const float *x, int64_t m,
                                  const float *residual, int act, float *y, int nthreads,
                                  const uint8_t *gw) {
    return tri_linear(x, m, p->k, p->w, p->n, p->row_bytes, p->fmt, p->scale, p->nscale, p->bias,
                      residual, act, p->act_quant, y, nthreads, gw);
}

/* The layers of chain c one after the other on m tokens, the intermediate rows in two
 * ping-pong buffers of the calling thread's scratch; layer i on min(cap_i, nthreads)
 * threads. Both the layer-by-layer chain and each task of a chain region run this. */
static int chain_layers(const TriChainPlan *c, const float *x, int64_t m, float *y,
                        int nthreads, const uint8_t *const *gws) {
    const int64_t L = c->nlayers, stride = m * c->max_n;
    const size_t bytes = L > 1 ? (size_t)(2 * stride) * sizeof(float) : 0;
    float *buf = L > 1 ? scratch_get(TRI_SCRATCH_CHAIN, bytes) : NULL;
    if (L > 1 && !buf) return 1;
    const float *in = x;
    int rc = 0;
    for (int64_t i = 0; i < L && rc == 0; i++) {
        const int threads = c->caps && c->caps[i] > 0 && c->caps[i] < nthreads ? c->caps[i] : nthreads;
        float *out = i == L - 1 ? y : buf + (i & 1) * stride;
        rc = tri_linear_planned(&c->layers[i], in, m, NULL, c->acts[i], out, threads,
                                gws ? gws[i] : NULL);
        in = out;
    }
    scratch_put(buf, bytes);
    return rc;
}

/* A chain whose layers all take int8 activations through the G2 GEMM can run as one
 * parallel region: each thread takes a chunk of the tokens through every layer (quantize,
 * product, epilogue, then the next layer from its own rows), so the layers need no barrier
 * between them and the intermediate rows stay in the thread's cache. The layer-by-layer
 * chain starts and joins a team per layer, and team_for_work gives a product under two
 * threads' worth of work one thread: the digits MLP at a batch of 64 (64-128-10, 14 us on one
 * AVX2 core) ran alone, and as one region takes 9.3 us on two (1.0x with a team that slept,
 * after 2 ms idle). Every thread reads every weight, so the chunks are whole G2 token chunks
 * or the weights are small enough to stay in each core's cache. Results are the
 * layer-by-layer chain's, bit for bit: every token's arithmetic is the same. */
#define TRI_CHAIN_SHARED_BYTES ((int64_t)1 << 19) /* weights (G2 layouts) every thread may read */
#define TRI_CHAIN_MIN_ROWS 8                      /* tokens of a chunk, at least */
#define TRI_CHAIN_G2_ROWS (TRI_ISA_AVX512 ? TRI_GEMM_MC : G2A_MC) /* a G2 GEMM's token chunk */
/* quantizing one activation costs about as much as this many fp32 multiply-adds (the work
 * unit of team_for_work): 0.25 ns a value in a row of 64-128 on an AVX2 core */
#define TRI_QUANT_WORK 4.0

typedef struct {
    const TriChainPlan *c;
    const float *x;
    float *y;
    const uint8_t *const *gws;
    int64_t m, rows;
    _Atomic int err;
} ChainJob;

static void chain_task(void *ctx, int64_t task, int tid) {
    ChainJob *J = ctx;
    (void)tid;
    const TriChainPlan *c = J->c;
    const int64_t t0 = task * J->rows, mm = min64(J->m, t0 + J->rows) - t0;
    const int rc = chain_layers(c, J->x + t0 * c->layers[0].k, mm,
                                J->y + t0 * c->layers[c->nlayers - 1].n, 1, J->gws);
    if (rc) atomic_store(&J->err, rc);
}

/* The team of chain c on m tokens as one region (see ChainJob), or 0 when it runs layer by
 * layer: one layer, not every layer int8 with a G2 layout, a tuned thread cap, or too little
 * work. */
static int chain_region_team(const TriChainPlan *c, int64_t m, int nthreads,
                             const uint8_t *const *gws) {
    if (!TRI_HAVE_G2 || !gws || c->caps || nthreads < 2 || c->nlayers < 2) return 0;
    double work = 0.0;
    int64_t wbytes = 0;
    for (int64_t i = 0; i < c->nlayers; i++) {
        const TriLinearPlan *p = &c->layers[i];
        if (p->act_quant != 1 || !gws[i]) return 0;
        work += (double)m * (double)p->k * ((double)p->n * TRI_INT8_WORK + TRI_QUANT_WORK);
        wbytes += tri_g2_bytes(p->fmt, p->n, p->k);
    }
    /* one start and one join for all the layers: a thread is worth half a work unit */
    int team = team_for_work(2.0 * work, nthreads);
    while (team > 1) {
        const int64_t rows = (m + team - 1) / team;
        if (rows >= TRI_CHAIN_MIN_ROWS && (rows >= TRI_CHAIN_G2_ROWS || wbytes <= TRI_CHAIN_SHARED_BYTES)) break;
        team--;
    }
    return team > 1 ? team : 0;
}

TRI_EXPORT int tri_chain_planned(const TriChainPlan *c, const float *x, int64_t m, float *y,
                                 int nthreads, const uint8_t *const *gws) {
    if (c->nlayers <= 0) return 2;
    const int team = chain_region_team(c, m, nthreads, gws);
    if (team > 1) {
        ChainJob J = {.c = c, .x = x, .y = y, .gws = gws, .m = m};
        J.rows = (m + team - 1) / team;
        atomic_init(&J.err, 0);
        pool_run(chain_task, &J, (m + J.rows - 1) / J.rows, team);
        return atomic_load(&J.err);
    }
    return chain_layers(c, x, m, y, nthreads, gws);
}

#include "tritium_pool2d.h" /* max and average pooling on NCHW planes */
#include "tritium_dw.h"   /* depthwise and pointwise convs (fp32), tri_conv2d_planned's */
#include "tritium_conv8.h" /* the int8-activation implicit-GEMM conv (int8_image) */
#include "tritium_conv.h" /* conv2d: patches gathered into the GEMM rows, NCHW out */
#include "tritium_lm.h"   /* language-model decode: the int8 head, the RMSNorm-fused BitLinear */
#include "tritium_lmblock.h" /* a BitNet decoder block in one call: one token, or a prompt */
