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

#define TRI_ABI_VERSION 10

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

#include "tritium_driver.h"
#include "tritium_f32p.h" /* the fp32-activation panel GEMM for batches of tokens */
#include "tritium_g2avx2.h" /* the int8 batch GEMM of the AVX2 path */
#include "tritium_g2.h"


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
        int rc = run_problem(&P, nthreads);
        free(xp);
        return rc;
    }
    int8_t *xq = tri_alloc((size_t)(m * P.ldx));
    float *sx = tri_alloc((size_t)m * sizeof(float));
    int32_t *sumx = tri_alloc((size_t)m * sizeof(int32_t));
    int err = 1;
    if (xq && sx && sumx) {
        quantize_all(x, m, k, xq, P.ldx, sx, sumx, nthreads);
        P.xq = xq; P.sx = sx; P.sumx = sumx;
        err = TRI_HAVE_G2 && m >= TRI_GEMM_MIN_M ? run_g2(&P, gw, nthreads) : run_problem(&P, nthreads);
    }
    free(xq); free(sx); free(sumx);
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

TRI_EXPORT int tri_chain_planned(const TriChainPlan *c, const float *x, int64_t m, float *y,
                                 int nthreads, const uint8_t *const *gws) {
    const int64_t L = c->nlayers;
    if (L <= 0) return 2;
#define CHAIN_THREADS(i) (c->caps && c->caps[i] > 0 && c->caps[i] < nthreads ? c->caps[i] : nthreads)
    if (L == 1)
        return tri_linear_planned(&c->layers[0], x, m, NULL, c->acts[0], y, CHAIN_THREADS(0),
                                  gws ? gws[0] : NULL);
    /* two ping-pong buffers for the intermediate activations, each m x max_n */
    const int64_t stride = m * c->max_n;
    float *buf = tri_alloc((size_t)(2 * stride) * sizeof(float));
    if (!buf) return 1;
    const float *in = x;
    int rc = 0;
    for (int64_t i = 0; i < L && rc == 0; i++) {
        float *out = i == L - 1 ? y : buf + (i & 1) * stride;
        rc = tri_linear_planned(&c->layers[i], in, m, NULL, c->acts[i], out, CHAIN_THREADS(i),
                                gws ? gws[i] : NULL);
        in = out;
    }
    free(buf);
    return rc;
#undef CHAIN_THREADS
}

#include "tritium_dw.h"   /* depthwise and pointwise convs (fp32), tri_conv2d_planned's */
#include "tritium_conv8.h" /* the int8-activation implicit-GEMM conv (int8_image) */
#include "tritium_conv.h" /* conv2d: patches gathered into the GEMM rows, NCHW out */
#include "tritium_lm.h"   /* language-model decode: the int8 head, the RMSNorm-fused BitLinear */
#include "tritium_lmblock.h" /* a BitNet decoder block in one call: one token, or a prompt */
