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

#define TRI_ABI_VERSION 5

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

/* ------------------------------------------------------------------------------------ */
/* Packing                                                                              */
/* ------------------------------------------------------------------------------------ */

/* 128 trits -> 32 bytes; byte j = c[j] | c[j+32]<<2 | c[j+64]<<4 | c[j+96]<<6.
 * Returns the largest code seen (> 2 means an invalid value was present). */
static inline uint8_t pack_block_t2(const int8_t *s, uint8_t *d) {
    uint8_t mx = 0;
    for (int j = 0; j < 32; j++) {
        uint8_t c0 = (uint8_t)(s[j] + 1), c1 = (uint8_t)(s[j + 32] + 1);
        uint8_t c2 = (uint8_t)(s[j + 64] + 1), c3 = (uint8_t)(s[j + 96] + 1);
        uint8_t a = c0 > c1 ? c0 : c1, b = c2 > c3 ? c2 : c3, m = a > b ? a : b;
        mx = mx > m ? mx : m;
        d[j] = (uint8_t)(c0 | (c1 << 2) | (c2 << 4) | (c3 << 6));
    }
    return mx;
}

/* 160 trits -> 32 bytes; byte j = 81 c[j] + 27 c[j+32] + 9 c[j+64] + 3 c[j+96] + c[j+128]. */
static inline uint8_t pack_block_t16(const int8_t *s, uint8_t *d) {
    uint8_t mx = 0;
    for (int j = 0; j < 32; j++) {
        uint8_t c0 = (uint8_t)(s[j] + 1), c1 = (uint8_t)(s[j + 32] + 1);
        uint8_t c2 = (uint8_t)(s[j + 64] + 1), c3 = (uint8_t)(s[j + 96] + 1);
        uint8_t c4 = (uint8_t)(s[j + 128] + 1);
        uint8_t a = c0 > c1 ? c0 : c1, b = c2 > c3 ? c2 : c3, m = a > b ? a : b;
        m = m > c4 ? m : c4;
        mx = mx > m ? mx : m;
        d[j] = (uint8_t)(c0 * 81 + c1 * 27 + c2 * 9 + c3 * 3 + c4);
    }
    return mx;
}

static int pack_row(int fmt, const int8_t *src, int64_t k, uint8_t *dst) {
    const int64_t be = blk_elems(fmt);
    const int64_t full = k / be;
    uint8_t mx = 0;
    for (int64_t b = 0; b < full; b++) {
        uint8_t m = fmt == TRI_FMT_T2 ? pack_block_t2(src + b * be, dst + b * TRI_BLOCK_BYTES)
                                      : pack_block_t16(src + b * be, dst + b * TRI_BLOCK_BYTES);
        mx = mx > m ? mx : m;
    }
    if (k > full * be) {
        int8_t tmp[TRI_T16_BLOCK];
        memset(tmp, 0, sizeof tmp);
        memcpy(tmp, src + full * be, (size_t)(k - full * be));
        uint8_t m = fmt == TRI_FMT_T2 ? pack_block_t2(tmp, dst + full * TRI_BLOCK_BYTES)
                                      : pack_block_t16(tmp, dst + full * TRI_BLOCK_BYTES);
        mx = mx > m ? mx : m;
    }
    return mx > 2;
}

typedef struct {
    int fmt;
    const int8_t *src;
    int64_t rows, k, row_bytes, rows_per_task;
    uint8_t *dst;
    int8_t *out;
    const uint8_t *in;
    _Atomic int64_t bad_row;
} RowsJob;

static void pack_task(void *ctx, int64_t task, int tid) {
    RowsJob *J = ctx;
    (void)tid;
    int64_t r1 = min64(J->rows, (task + 1) * J->rows_per_task);
    for (int64_t r = task * J->rows_per_task; r < r1; r++)
        if (pack_row(J->fmt, J->src + r * J->k, J->k, J->dst + r * J->row_bytes)) atomic_min64(&J->bad_row, r);
}

static int64_t rows_per_task(int64_t rows, int64_t k, int nthreads) {
    /* ~8 tasks per thread, each at least ~64K elements */
    int64_t per = (rows + 8 * (int64_t)nthreads - 1) / (8 * (int64_t)nthreads);
    int64_t min_rows = (65536 + k) / (k + 1);
    if (per < min_rows) per = min_rows;
    return per < 1 ? 1 : per;
}

TRI_EXPORT int64_t tri_pack(int fmt, const int8_t *src, int64_t rows, int64_t k, uint8_t *dst,
                            int64_t row_bytes, int nthreads) {
    RowsJob J = {.fmt = fmt, .src = src, .rows = rows, .k = k, .row_bytes = row_bytes, .dst = dst};
    atomic_init(&J.bad_row, rows);
    J.rows_per_task = rows_per_task(rows, k, nthreads);
    pool_run(pack_task, &J, (rows + J.rows_per_task - 1) / J.rows_per_task, nthreads);
    int64_t bad_row = atomic_load(&J.bad_row);
    if (bad_row == rows) return -1;
    for (int64_t c = 0; c < k; c++) {
        int8_t v = src[bad_row * k + c];
        if (v < -1 || v > 1) return bad_row * k + c;
    }
    return bad_row * k; /* not reached: the row had an invalid value */
}

/* float32 input: trit = sign(v), invalid unless v is exactly that trit (catches 0.5, 2, NaN). */
static int f32_row_to_trits(const float *s, int64_t k, int8_t *d) {
    uint8_t bad = 0;
    for (int64_t i = 0; i < k; i++) {
        float v = s[i];
        int8_t t = (int8_t)((v > 0.0f) - (v < 0.0f));
        bad |= (uint8_t)(v != (float)t);
        d[i] = t;
    }
    return bad;
}

typedef struct {
    int fmt;
    const float *src;
    int64_t rows, k, row_bytes, rows_per_task;
    uint8_t *dst;
    _Atomic int64_t bad_row;
    _Atomic int oom;
} PackF32Job;

static void pack_f32_task(void *ctx, int64_t task, int tid) {
    PackF32Job *J = ctx;
    (void)tid;
    int8_t *tmp = tri_alloc((size_t)J->k);
    if (!tmp) {
        atomic_store(&J->oom, 1);
        return;
    }
    int64_t r1 = min64(J->rows, (task + 1) * J->rows_per_task);
    for (int64_t r = task * J->rows_per_task; r < r1; r++) {
        int bad = f32_row_to_trits(J->src + r * J->k, J->k, tmp);
        bad |= pack_row(J->fmt, tmp, J->k, J->dst + r * J->row_bytes);
        if (bad) atomic_min64(&J->bad_row, r);
    }
    free(tmp);
}

/* Like tri_pack for float32 input. Returns -1, the flat index of the first invalid value,
 * or -2 when a buffer could not be allocated. */
TRI_EXPORT int64_t tri_pack_f32(int fmt, const float *src, int64_t rows, int64_t k, uint8_t *dst,
                                int64_t row_bytes, int nthreads) {
    PackF32Job J = {.fmt = fmt, .src = src, .rows = rows, .k = k, .row_bytes = row_bytes, .dst = dst};
    atomic_init(&J.bad_row, rows);
    atomic_init(&J.oom, 0);
    J.rows_per_task = rows_per_task(rows, k, nthreads);
    pool_run(pack_f32_task, &J, (rows + J.rows_per_task - 1) / J.rows_per_task, nthreads);
    if (atomic_load(&J.oom)) return -2;
    int64_t bad_row = atomic_load(&J.bad_row);
    if (bad_row == rows) return -1;
    for (int64_t c = 0; c < k; c++) {
        float v = src[bad_row * k + c];
        if (!(v == -1.0f || v == 0.0f || v == 1.0f)) return bad_row * k + c;
    }
    return bad_row * k;
}

/* Decode one 32-byte block into trits. Returns nonzero when a byte is invalid. */
static inline int unpack_block_t2(const uint8_t *s, int8_t *d) {
    uint8_t bad = 0;
    for (int j = 0; j < 32; j++) {
        uint8_t b = s[j];
        bad |= (uint8_t)(b & (b >> 1) & 0x55); /* a code 3 has both of its bits set */
        d[j] = (int8_t)((b & 3) - 1);
        d[j + 32] = (int8_t)(((b >> 2) & 3) - 1);
        d[j + 64] = (int8_t)(((b >> 4) & 3) - 1);
        d[j + 96] = (int8_t)((b >> 6) - 1);
    }
    return bad != 0;
}

/* Base-3 digits by fixed point: f = 270 v approximates v / 243 in 16-bit fixed point
 * from above by less than 1/243, so the top digit of 3 f is exactly the next trit code
 * for every v in 0..242 (checked exhaustively in the tests). */
static inline int unpack_block_t16(const uint8_t *s, int8_t *d) {
    uint8_t mx = 0;
    for (int j = 0; j < 32; j++) {
        uint32_t v = s[j];
        mx = mx > s[j] ? mx : s[j];
        uint32_t f = v * 270u, t;
        t = f * 3u; d[j] = (int8_t)((int)(t >> 16) - 1); f = t & 0xFFFFu;
        t = f * 3u; d[j + 32] = (int8_t)((int)(t >> 16) - 1); f = t & 0xFFFFu;
        t = f * 3u; d[j + 64] = (int8_t)((int)(t >> 16) - 1); f = t & 0xFFFFu;
        t = f * 3u; d[j + 96] = (int8_t)((int)(t >> 16) - 1); f = t & 0xFFFFu;
        t = f * 3u; d[j + 128] = (int8_t)((int)(t >> 16) - 1);
    }
    return mx > 242;
}

/* Whether byte j of block b (row of length k) is invalid: bad code or non-zero padding. */
static int byte_invalid(int fmt, uint8_t byte, int64_t b, int64_t j, int64_t k) {
    const int64_t be = blk_elems(fmt);
    const int nd = fmt == TRI_FMT_T2 ? 4 : 5;
    int codes[5];
    if (fmt == TRI_FMT_T2) {
        for (int i = 0; i < 4; i++) codes[i] = (byte >> (2 * i)) & 3;
    } else {
        if (byte > 242) return 1;
        int v = byte;
        for (int i = 4; i >= 0; i--) { codes[i] = v % 3; v /= 3; }
    }
    for (int i = 0; i < nd; i++) {
        if (codes[i] == 3) return 1;
        if (b * be + 32 * i + j >= k && codes[i] != 1) return 1;
    }
    return 0;
}

static int unpack_row(int fmt, const uint8_t *src, int64_t k, int8_t *dst) {
    const int64_t be = blk_elems(fmt);
    const int64_t full = k / be;
    int8_t tmp[TRI_T16_BLOCK];
    int bad = 0;
    for (int64_t b = 0; b < full; b++) {
        int8_t *d = dst ? dst + b * be : tmp;
        bad |= fmt == TRI_FMT_T2 ? unpack_block_t2(src + b * TRI_BLOCK_BYTES, d)
                                 : unpack_block_t16(src + b * TRI_BLOCK_BYTES, d);
    }
    if (k > full * be) {
        int64_t rem = k - full * be;
        bad |= fmt == TRI_FMT_T2 ? unpack_block_t2(src + full * TRI_BLOCK_BYTES, tmp)
                                 : unpack_block_t16(src + full * TRI_BLOCK_BYTES, tmp);
        for (int64_t i = rem; i < be; i++) bad |= tmp[i] != 0;
        if (dst) memcpy(dst + full * be, tmp, (size_t)rem);
    }
    return bad;
}

static void unpack_task(void *ctx, int64_t task, int tid) {
    RowsJob *J = ctx;
    (void)tid;
    int64_t r1 = min64(J->rows, (task + 1) * J->rows_per_task);
    for (int64_t r = task * J->rows_per_task; r < r1; r++)
        if (unpack_row(J->fmt, J->in + r * J->row_bytes, J->k, J->out ? J->out + r * J->k : NULL))
            atomic_min64(&J->bad_row, r);
}

TRI_EXPORT int64_t tri_unpack(int fmt, const uint8_t *src, int64_t rows, int64_t k,
                              int64_t row_bytes, int8_t *dst, int nthreads) {
    RowsJob J = {.fmt = fmt, .in = src, .rows = rows, .k = k, .row_bytes = row_bytes, .out = dst};
    atomic_init(&J.bad_row, rows);
    J.rows_per_task = rows_per_task(rows, k, nthreads);
    pool_run(unpack_task, &J, (rows + J.rows_per_task - 1) / J.rows_per_task, nthreads);
    int64_t bad_row = atomic_load(&J.bad_row);
    if (bad_row == rows) return -1;
    for (int64_t i = 0; i < row_bytes; i++) {
        if (byte_invalid(fmt, src[bad_row * row_bytes + i], i / TRI_BLOCK_BYTES,
                         i % TRI_BLOCK_BYTES, k))
            return bad_row * row_bytes + i;
    }
    return bad_row * row_bytes;
}

/* ------------------------------------------------------------------------------------ */
/* Activation quantization and epilogue                                                 */
/* ------------------------------------------------------------------------------------ */

static void quantize_row(const float *x, int64_t k, int8_t *q, int64_t ldq, float *s, int32_t *sum) {
#if TRI_ISA_AVX512
    /* the same arithmetic 16 lanes at a time: IEEE division, round to nearest even, clamp */
    {
        __m512 am = _mm512_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= k; i += 16) am = _mm512_max_ps(am, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
        float amax = _mm512_reduce_max_ps(am);
        for (; i < k; i++) {
            float a = fabsf(x[i]);
            amax = a > amax ? a : amax;
        }
        float sc = amax / 127.0f;
        if (sc == 0.0f) sc = 1.0f;
        const __m512 vs = _mm512_set1_ps(sc), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
        __m512i acc = _mm512_setzero_si512();
        for (i = 0; i < k; i += 16) {
            const __mmask16 m = k - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - i)) - 1u);
            __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
            v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            const __m512i qi = _mm512_maskz_mov_epi32(m, _mm512_cvtps_epi32(v));
            acc = _mm512_add_epi32(acc, qi);
            _mm_mask_storeu_epi8(q + i, m, _mm512_cvtepi32_epi8(qi));
        }
        for (i = k; i < ldq; i++) q[i] = 0;
        *s = sc;
        if (sum) *sum = _mm512_reduce_add_epi32(acc);
        return;
    }
#endif
    float amax = 0.0f;
    for (int64_t i = 0; i < k; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    float sc = amax / 127.0f;
    if (sc == 0.0f) sc = 1.0f;
    int32_t acc = 0;
    for (int64_t i = 0; i < k; i++) {
        float v = nearbyintf(x[i] / sc);
        v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
        int8_t qi = (int8_t)v;
        q[i] = qi;
        acc += qi;
    }
    for (int64_t i = k; i < ldq; i++) q[i] = 0;
    *s = sc;
    if (sum) *sum = acc;
}

typedef struct {
    const float *x;
    int64_t k, ldq;
    int8_t *xq;
    float *s;
    int32_t *sum;
} QuantJob;

static void quant_task(void *ctx, int64_t t, int tid) {
    QuantJob *J = ctx;
    (void)tid;
    quantize_row(J->x + t * J->k, J->k, J->xq + t * J->ldq, J->ldq, J->s + t, J->sum ? J->sum + t : NULL);
}

static void quantize_all(const float *x, int64_t m, int64_t k, int8_t *xq, int64_t ldq, float *s,
                         int32_t *sum, int nthreads) {
    QuantJob J = {x, k, ldq, xq, s, sum};
    pool_run(quant_task, &J, m, m * k < 32768 ? 1 : nthreads);
}

TRI_EXPORT void tri_quantize_rows(const float *x, int64_t m, int64_t k, int8_t *xq, float *s,
                                  int nthreads) {
    quantize_all(x, m, k, xq, k, s, NULL, nthreads);
}

static inline float act_apply(int act, float v) {
    switch (act) {
    case TRI_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case TRI_ACT_RELU6: return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
    case TRI_ACT_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case TRI_ACT_SILU: return v / (1.0f + expf(-v));
    case TRI_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    case TRI_ACT_TANH: return tanhf(v);
    default: return v;
    }
}

typedef struct {
    const float *scale;
    int64_t nscale;
    const float *bias;
    const float *residual;
    int act;
} Epi;

static inline float epi_apply(const Epi *e, int64_t n, int64_t t, int64_t col, float v) {
    v *= e->scale[e->nscale == 1 ? 0 : col];
    if (e->bias) v += e->bias[col];
    if (e->residual) v += e->residual[t * n + col];
    return act_apply(e->act, v);
}

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
#define TRI_HAVE_DIRECT 1

static inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

static inline float hsum_f32(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The five t1.6 code vectors of one 32-byte block (digit i = codes of elements j + 32 i). */
#define T16_DECODE(v, c0, c1, c2, c3, c4)                                                     \
    do {                                                                                      \
        const __m256i z_ = _mm256_setzero_si256(), k3_ = _mm256_set1_epi16(3);               \
        __m256i fl_ = _mm256_mullo_epi16(_mm256_unpacklo_epi8((v), z_), _mm256_set1_epi16(270)); \
        __m256i fh_ = _mm256_mullo_epi16(_mm256_unpackhi_epi8((v), z_), _mm256_set1_epi16(270)); \
        c0 = _mm256_packus_epi16(_mm256_mulhi_epu16(fl_, k3_), _mm256_mulhi_epu16(fh_, k3_)); \
        fl_ = _mm256_mullo_epi16(fl_, k3_); fh_ = _mm256_mullo_epi16(fh_, k3_);                \
        c1 = _mm256_packus_epi16(_mm256_mulhi_epu16(fl_, k3_), _mm256_mulhi_epu16(fh_, k3_)); \
        fl_ = _mm256_mullo_epi16(fl_, k3_); fh_ = _mm256_mullo_epi16(fh_, k3_);                \
        c2 = _mm256_packus_epi16(_mm256_mulhi_epu16(fl_, k3_), _mm256_mulhi_epu16(fh_, k3_)); \
        fl_ = _mm256_mullo_epi16(fl_, k3_); fh_ = _mm256_mullo_epi16(fh_, k3_);                \
        c3 = _mm256_packus_epi16(_mm256_mulhi_epu16(fl_, k3_), _mm256_mulhi_epu16(fh_, k3_)); \
        fl_ = _mm256_mullo_epi16(fl_, k3_); fh_ = _mm256_mullo_epi16(fh_, k3_);                \
        c4 = _mm256_packus_epi16(_mm256_mulhi_epu16(fl_, k3_), _mm256_mulhi_epu16(fh_, k3_)); \
    } while (0)

#if TRI_ISA_AVX512 && defined(__AVX512VBMI__)
/* g_t16_tab[i][v] = base-3 digit i (most significant first) of byte v, for v < 243. */
static uint8_t g_t16_tab[5][256] __attribute__((aligned(64)));
static pthread_once_t g_t16_once = PTHREAD_ONCE_INIT;
static void t16_tables_fill(void) {
    for (int v = 0; v < 256; v++) {
        int r = v < 243 ? v : 0;
        for (int i = 4; i >= 0; i--) {
            g_t16_tab[i][v] = (uint8_t)(r % 3);
            r /= 3;
        }
    }
}
static inline void t16_tables_init(void) { pthread_once(&g_t16_once, t16_tables_fill); }
#endif

static void decode_codes(int fmt, const uint8_t *w, int64_t nb, uint8_t *c) {
    if (fmt == TRI_FMT_T2) {
        const __m256i m3 = _mm256_set1_epi8(3);
        for (int64_t b = 0; b < nb; b++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(w + b * 32));
            uint8_t *d = c + b * TRI_T2_BLOCK;
            _mm256_storeu_si256((__m256i *)d, _mm256_and_si256(v, m3));
            _mm256_storeu_si256((__m256i *)(d + 32), _mm256_and_si256(_mm256_srli_epi16(v, 2), m3));
            _mm256_storeu_si256((__m256i *)(d + 64), _mm256_and_si256(_mm256_srli_epi16(v, 4), m3));
            _mm256_storeu_si256((__m256i *)(d + 96), _mm256_and_si256(_mm256_srli_epi16(v, 6), m3));
        }
    } else {
        int64_t b = 0;
#if TRI_ISA_AVX512 && defined(__AVX512VBMI__)
        t16_tables_init();
        for (; b + 2 <= nb; b += 2) {
            const __m512i v = _mm512_loadu_si512(w + b * 32);
            const __mmask64 hi = _mm512_movepi8_mask(v);
            uint8_t *d = c + b * TRI_T16_BLOCK;
            for (int i = 0; i < 5; i++) {
                const __m512i *t = (const __m512i *)g_t16_tab[i];
                __m512i lo = _mm512_permutex2var_epi8(_mm512_load_si512(t), v, _mm512_load_si512(t + 1));
                __m512i up = _mm512_permutex2var_epi8(_mm512_load_si512(t + 2), v, _mm512_load_si512(t + 3));
                __m512i dg = _mm512_mask_blend_epi8(hi, lo, up);
                _mm256_storeu_si256((__m256i *)(d + 32 * i), _mm512_castsi512_si256(dg));
                _mm256_storeu_si256((__m256i *)(d + TRI_T16_BLOCK + 32 * i), _mm512_extracti64x4_epi64(dg, 1));
            }
        }
#endif
        for (; b < nb; b++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(w + b * 32)), c0, c1, c2, c3, c4;
            T16_DECODE(v, c0, c1, c2, c3, c4);
            uint8_t *d = c + b * TRI_T16_BLOCK;
            _mm256_storeu_si256((__m256i *)d, c0);
            _mm256_storeu_si256((__m256i *)(d + 32), c1);
            _mm256_storeu_si256((__m256i *)(d + 64), c2);
            _mm256_storeu_si256((__m256i *)(d + 96), c3);
            _mm256_storeu_si256((__m256i *)(d + 128), c4);
        }
    }
}

#define LD(p) _mm256_loadu_si256((const __m256i *)(p))
#if TRI_ISA_AVX512
/* AVX-512 VNNI (VL form): unsigned codes x signed activations, 4 products into each int32. */
#define MAC(acc, c, x) acc = _mm256_dpbusd_epi32(acc, (c), (x))
#else
#define MAC(acc, c, x) acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16((c), (x)), ones))
#endif

static void i8_dot4x1(const uint8_t *const *c, const int8_t *x, int64_t kp, int32_t *o) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < kp; i += 32) {
        __m256i xv = LD(x + i);
        MAC(a0, LD(c[0] + i), xv);
        MAC(a1, LD(c[1] + i), xv);
        MAC(a2, LD(c[2] + i), xv);
        MAC(a3, LD(c[3] + i), xv);
    }
    o[0] = hsum_i32(a0); o[1] = hsum_i32(a1); o[2] = hsum_i32(a2); o[3] = hsum_i32(a3);
}

static void i8_dot4x2(const uint8_t *const *c, const int8_t *x0, const int8_t *x1, int64_t kp,
                      int32_t *o) {
    const __m256i ones = _mm256_set1_epi16(1);
#if TRI_ISA_AVX512
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    __m256i b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (int64_t i = 0; i < kp; i += 32) {
        __m256i xa = LD(x0 + i), xb = LD(x1 + i), cv;
        cv = LD(c[0] + i); MAC(a0, cv, xa); MAC(b0, cv, xb);
        cv = LD(c[1] + i); MAC(a1, cv, xa); MAC(b1, cv, xb);
        cv = LD(c[2] + i); MAC(a2, cv, xa); MAC(b2, cv, xb);
        cv = LD(c[3] + i); MAC(a3, cv, xa); MAC(b3, cv, xb);
    }
    o[0] = hsum_i32(a0); o[1] = hsum_i32(a1); o[2] = hsum_i32(a2); o[3] = hsum_i32(a3);
    o[4] = hsum_i32(b0); o[5] = hsum_i32(b1); o[6] = hsum_i32(b2); o[7] = hsum_i32(b3);
#else
    /* maddubs results (|.| <= 508) are summed in int16 for up to 64 steps (64 * 508 < 32768)
     * and widened to int32 once per run: 2 instead of 3 instructions per 32 products. */
    int32_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i0 = 0; i0 < kp; i0 += 64 * 32) {
        const int64_t i1 = min64(kp, i0 + 64 * 32);
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        __m256i b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int64_t i = i0; i < i1; i += 32) {
            __m256i xa = LD(x0 + i), xb = LD(x1 + i), cv;
            cv = LD(c[0] + i); a0 = _mm256_add_epi16(a0, _mm256_maddubs_epi16(cv, xa)); b0 = _mm256_add_epi16(b0, _mm256_maddubs_epi16(cv, xb));
            cv = LD(c[1] + i); a1 = _mm256_add_epi16(a1, _mm256_maddubs_epi16(cv, xa)); b1 = _mm256_add_epi16(b1, _mm256_maddubs_epi16(cv, xb));
            cv = LD(c[2] + i); a2 = _mm256_add_epi16(a2, _mm256_maddubs_epi16(cv, xa)); b2 = _mm256_add_epi16(b2, _mm256_maddubs_epi16(cv, xb));
            cv = LD(c[3] + i); a3 = _mm256_add_epi16(a3, _mm256_maddubs_epi16(cv, xa)); b3 = _mm256_add_epi16(b3, _mm256_maddubs_epi16(cv, xb));
        }
        acc[0] += hsum_i32(_mm256_madd_epi16(a0, ones)); acc[1] += hsum_i32(_mm256_madd_epi16(a1, ones));
        acc[2] += hsum_i32(_mm256_madd_epi16(a2, ones)); acc[3] += hsum_i32(_mm256_madd_epi16(a3, ones));
        acc[4] += hsum_i32(_mm256_madd_epi16(b0, ones)); acc[5] += hsum_i32(_mm256_madd_epi16(b1, ones));
        acc[6] += hsum_i32(_mm256_madd_epi16(b2, ones)); acc[7] += hsum_i32(_mm256_madd_epi16(b3, ones));
    }
    for (int j = 0; j < 8; j++) o[j] = acc[j];
#endif
}

/* Sum of 4 maddubs (t2) or 5 (t1.6) stays below 5 * 508 < 32768: add in int16, then widen. */
static inline __m256i blk_t2(__m256i v, __m256i x0, __m256i x1, __m256i x2, __m256i x3) {
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(v, m3), x0),
                                 _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 2), m3), x1));
    __m256i q = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m3), x2),
                                 _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 6), m3), x3));
    return _mm256_add_epi16(p, q);
}


#if TRI_ISA_AVX512
/* acc += u8 codes . s8 activations; inline asm because GCC 12 copies the tied accumulator of
 * the intrinsic through a fresh register on every use. */
#define DPBUSD512(acc, cu, xs) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(cu), "v"(xs))
#endif

#if TRI_ISA_AVX512
static inline __m256i blk_t2_vnni(__m256i acc, __m256i v, __m256i x0, __m256i x1, __m256i x2, __m256i x3) {
    const __m256i m3 = _mm256_set1_epi8(3);
    acc = _mm256_dpbusd_epi32(acc, _mm256_and_si256(v, m3), x0);
    acc = _mm256_dpbusd_epi32(acc, _mm256_and_si256(_mm256_srli_epi16(v, 2), m3), x1);
    acc = _mm256_dpbusd_epi32(acc, _mm256_and_si256(_mm256_srli_epi16(v, 4), m3), x2);
    return _mm256_dpbusd_epi32(acc, _mm256_srli_epi16(_mm256_andnot_si256(_mm256_set1_epi8(0x3F), v), 6), x3);
}
#endif

static void gemv_direct4(int fmt, const uint8_t *const *w, const int8_t *x, int64_t nb, int32_t *o) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
#if TRI_ISA_AVX512
    if (fmt == TRI_FMT_T2) {
        const uint8_t *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
        int64_t b = 0;
        /* two blocks per zmm: the low half holds block b, the high half block b + 1 */
        __m512i z0 = _mm512_setzero_si512(), z1 = z0, z2 = z0, z3 = z0;
        const __m512i m3z = _mm512_set1_epi8(3);
        for (; b + 2 <= nb; b += 2) {
            const int8_t *xa = x + b * TRI_T2_BLOCK, *xc = xa + TRI_T2_BLOCK;
            __m512i xv[4];
            for (int i = 0; i < 4; i++)
                xv[i] = _mm512_inserti64x4(_mm512_castsi256_si512(LD(xa + 32 * i)), LD(xc + 32 * i), 1);
#define T2Z(acc, wp)                                                                                  \
    do {                                                                                              \
        const __m512i v_ = _mm512_loadu_si512((wp) + b * 32);                                         \
        DPBUSD512(acc, _mm512_and_si512(v_, m3z), xv[0]);                                            \
        DPBUSD512(acc, _mm512_and_si512(_mm512_srli_epi16(v_, 2), m3z), xv[1]);                      \
        DPBUSD512(acc, _mm512_and_si512(_mm512_srli_epi16(v_, 4), m3z), xv[2]);                      \
        DPBUSD512(acc, _mm512_and_si512(_mm512_srli_epi16(v_, 6), m3z), xv[3]);                      \
    } while (0)
            T2Z(z0, w0);
            T2Z(z1, w1);
            T2Z(z2, w2);
            T2Z(z3, w3);
#undef T2Z
        }
        a0 = _mm256_add_epi32(_mm512_castsi512_si256(z0), _mm512_extracti64x4_epi64(z0, 1));
        a1 = _mm256_add_epi32(_mm512_castsi512_si256(z1), _mm512_extracti64x4_epi64(z1, 1));
        a2 = _mm256_add_epi32(_mm512_castsi512_si256(z2), _mm512_extracti64x4_epi64(z2, 1));
        a3 = _mm256_add_epi32(_mm512_castsi512_si256(z3), _mm512_extracti64x4_epi64(z3, 1));
        for (; b < nb; b++) {
            const int8_t *xb = x + b * TRI_T2_BLOCK;
            __m256i x0 = LD(xb), x1 = LD(xb + 32), x2 = LD(xb + 64), x3 = LD(xb + 96);
            a0 = blk_t2_vnni(a0, LD(w0 + b * 32), x0, x1, x2, x3);
            a1 = blk_t2_vnni(a1, LD(w1 + b * 32), x0, x1, x2, x3);
            a2 = blk_t2_vnni(a2, LD(w2 + b * 32), x0, x1, x2, x3);
            a3 = blk_t2_vnni(a3, LD(w3 + b * 32), x0, x1, x2, x3);
        }
    } else
#endif
    if (fmt == TRI_FMT_T2) {
        const uint8_t *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
        int64_t b = 0;
        /* two blocks per step: 8 maddubs summed in int16 (max 4064) before widening */
        for (; b + 2 <= nb; b += 2) {
            const int8_t *xb = x + b * TRI_T2_BLOCK;
            __m256i x0 = LD(xb), x1 = LD(xb + 32), x2 = LD(xb + 64), x3 = LD(xb + 96);
            __m256i y0 = LD(xb + 128), y1 = LD(xb + 160), y2 = LD(xb + 192), y3 = LD(xb + 224);
            int64_t o0 = b * 32, o1 = o0 + 32;
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_add_epi16(blk_t2(LD(w0 + o0), x0, x1, x2, x3), blk_t2(LD(w0 + o1), y0, y1, y2, y3)), ones));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_add_epi16(blk_t2(LD(w1 + o0), x0, x1, x2, x3), blk_t2(LD(w1 + o1), y0, y1, y2, y3)), ones));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_add_epi16(blk_t2(LD(w2 + o0), x0, x1, x2, x3), blk_t2(LD(w2 + o1), y0, y1, y2, y3)), ones));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_add_epi16(blk_t2(LD(w3 + o0), x0, x1, x2, x3), blk_t2(LD(w3 + o1), y0, y1, y2, y3)), ones));
        }
        for (; b < nb; b++) {
            const int8_t *xb = x + b * TRI_T2_BLOCK;
            __m256i x0 = LD(xb), x1 = LD(xb + 32), x2 = LD(xb + 64), x3 = LD(xb + 96);
            int64_t o0 = b * 32;
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(blk_t2(LD(w0 + o0), x0, x1, x2, x3), ones));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(blk_t2(LD(w1 + o0), x0, x1, x2, x3), ones));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(blk_t2(LD(w2 + o0), x0, x1, x2, x3), ones));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(blk_t2(LD(w3 + o0), x0, x1, x2, x3), ones));
        }
    } else {
        __m256i *acc[4] = {&a0, &a1, &a2, &a3};
        int64_t b = 0;
#if TRI_ISA_AVX512 && defined(__AVX512VBMI__)
        /* Two blocks per zmm; each base-3 digit plane is a 256-entry byte table lookup done as
         * two 128-entry vpermi2b lookups blended on the index's top bit. */
        t16_tables_init();
        __m512i z0 = _mm512_setzero_si512(), z1 = z0, z2 = z0, z3 = z0;
        __m512i *zacc[4] = {&z0, &z1, &z2, &z3};
        for (; b + 2 <= nb; b += 2) {
            const int8_t *xa = x + b * TRI_T16_BLOCK, *xc = xa + TRI_T16_BLOCK;
            __m512i xv[5];
            for (int i = 0; i < 5; i++)
                xv[i] = _mm512_inserti64x4(_mm512_castsi256_si512(LD(xa + 32 * i)), LD(xc + 32 * i), 1);
            for (int r = 0; r < 4; r++) {
                const __m512i v = _mm512_loadu_si512(w[r] + b * 32);
                const __mmask64 hi = _mm512_movepi8_mask(v);
                __m512i acc = *zacc[r];
                for (int i = 0; i < 5; i++) {
                    const __m512i *t = (const __m512i *)g_t16_tab[i];
                    __m512i lo = _mm512_permutex2var_epi8(_mm512_load_si512(t), v, _mm512_load_si512(t + 1));
                    __m512i up = _mm512_permutex2var_epi8(_mm512_load_si512(t + 2), v, _mm512_load_si512(t + 3));
                    acc = _mm512_dpbusd_epi32(acc, _mm512_mask_blend_epi8(hi, lo, up), xv[i]);
                }
                *zacc[r] = acc;
            }
        }
        a0 = _mm256_add_epi32(a0, _mm256_add_epi32(_mm512_castsi512_si256(z0), _mm512_extracti64x4_epi64(z0, 1)));
        a1 = _mm256_add_epi32(a1, _mm256_add_epi32(_mm512_castsi512_si256(z1), _mm512_extracti64x4_epi64(z1, 1)));
        a2 = _mm256_add_epi32(a2, _mm256_add_epi32(_mm512_castsi512_si256(z2), _mm512_extracti64x4_epi64(z2, 1)));
        a3 = _mm256_add_epi32(a3, _mm256_add_epi32(_mm512_castsi512_si256(z3), _mm512_extracti64x4_epi64(z3, 1)));
#endif
        for (; b < nb; b++) {
            const int8_t *xb = x + b * TRI_T16_BLOCK;
            for (int r = 0; r < 4; r++) {
                __m256i c0, c1, c2, c3, c4, v = LD(w[r] + b * 32);
                T16_DECODE(v, c0, c1, c2, c3, c4);
                __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(c0, LD(xb)), _mm256_maddubs_epi16(c1, LD(xb + 32)));
                p = _mm256_add_epi16(p, _mm256_add_epi16(_mm256_maddubs_epi16(c2, LD(xb + 64)), _mm256_maddubs_epi16(c3, LD(xb + 96))));
                p = _mm256_add_epi16(p, _mm256_maddubs_epi16(c4, LD(xb + 128)));
                *acc[r] = _mm256_add_epi32(*acc[r], _mm256_madd_epi16(p, ones));
            }
        }
    }
    o[0] = hsum_i32(a0); o[1] = hsum_i32(a1); o[2] = hsum_i32(a2); o[3] = hsum_i32(a3);
}

/* fp32 GEMV from the packed bytes: 32 codes (0..2) -> 32 trits -> 4 x 8 floats, FMA with x. */
static inline __m256 fma_codes32(__m256i c, const float *x, __m256 acc) {
    const __m256i t = _mm256_sub_epi8(c, _mm256_set1_epi8(1));
    const __m128i lo = _mm256_castsi256_si128(t), hi = _mm256_extracti128_si256(t, 1);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), _mm256_loadu_ps(x), acc);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), _mm256_loadu_ps(x + 8), acc);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), _mm256_loadu_ps(x + 16), acc);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), _mm256_loadu_ps(x + 24), acc);
    return acc;
}

#if TRI_ISA_AVX512
typedef __m512 facc_t;
#define FACC_ZERO() _mm512_setzero_ps()
#define FACC_SUM(a, b) _mm512_reduce_add_ps(_mm512_add_ps((a), (b)))
static inline __m512 fma_codes32_512(__m256i c, const float *x, __m512 acc) {
    const __m256i t = _mm256_sub_epi8(c, _mm256_set1_epi8(1));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(t))), _mm512_loadu_ps(x), acc);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(t, 1))), _mm512_loadu_ps(x + 16), acc);
}
#define FMA_CODES fma_codes32_512
#else
typedef __m256 facc_t;
#define FACC_ZERO() _mm256_setzero_ps()
#define FACC_SUM(a, b) hsum_f32(_mm256_add_ps((a), (b)))
#define FMA_CODES fma_codes32
#endif

/* x is zero padded to nb whole blocks. */
static void f32_gemv_direct4(int fmt, const uint8_t *const *w, const float *x, int64_t nb, float *o) {
    facc_t a[4][2];
    for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = FACC_ZERO();
    if (fmt == TRI_FMT_T2) {
        const __m256i m3 = _mm256_set1_epi8(3);
        for (int64_t b = 0; b < nb; b++) {
            const float *xb = x + b * TRI_T2_BLOCK;
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                const __m256i v = LD(w[r] + b * 32);
                a[r][0] = FMA_CODES(_mm256_and_si256(v, m3), xb, a[r][0]);
                a[r][1] = FMA_CODES(_mm256_and_si256(_mm256_srli_epi16(v, 2), m3), xb + 32, a[r][1]);
                a[r][0] = FMA_CODES(_mm256_and_si256(_mm256_srli_epi16(v, 4), m3), xb + 64, a[r][0]);
                a[r][1] = FMA_CODES(_mm256_and_si256(_mm256_srli_epi16(v, 6), m3), xb + 96, a[r][1]);
            }
        }
    } else {
        int64_t b = 0;
#if TRI_ISA_AVX512 && defined(__AVX512VBMI__)
        t16_tables_init();
        for (; b + 2 <= nb; b += 2) { /* two blocks per zmm, digits by table lookup */
            const float *xa = x + b * TRI_T16_BLOCK, *xc = xa + TRI_T16_BLOCK;
            for (int r = 0; r < 4; r++) {
                const __m512i v = _mm512_loadu_si512(w[r] + b * 32);
                const __mmask64 hi = _mm512_movepi8_mask(v);
                for (int i = 0; i < 5; i++) {
                    const __m512i *t = (const __m512i *)g_t16_tab[i];
                    __m512i lo = _mm512_permutex2var_epi8(_mm512_load_si512(t), v, _mm512_load_si512(t + 1));
                    __m512i up = _mm512_permutex2var_epi8(_mm512_load_si512(t + 2), v, _mm512_load_si512(t + 3));
                    __m512i d = _mm512_mask_blend_epi8(hi, lo, up);
                    a[r][i & 1] = FMA_CODES(_mm512_castsi512_si256(d), xa + 32 * i, a[r][i & 1]);
                    a[r][(i + 1) & 1] = FMA_CODES(_mm512_extracti64x4_epi64(d, 1), xc + 32 * i, a[r][(i + 1) & 1]);
                }
            }
        }
#endif
        for (; b < nb; b++) {
            const float *xb = x + b * TRI_T16_BLOCK;
            for (int r = 0; r < 4; r++) {
                __m256i c0, c1, c2, c3, c4, v = LD(w[r] + b * 32);
                T16_DECODE(v, c0, c1, c2, c3, c4);
                a[r][0] = FMA_CODES(c0, xb, a[r][0]);
                a[r][1] = FMA_CODES(c1, xb + 32, a[r][1]);
                a[r][0] = FMA_CODES(c2, xb + 64, a[r][0]);
                a[r][1] = FMA_CODES(c3, xb + 96, a[r][1]);
                a[r][0] = FMA_CODES(c4, xb + 128, a[r][0]);
            }
        }
    }
    for (int r = 0; r < 4; r++) o[r] = FACC_SUM(a[r][0], a[r][1]);
}

static inline __m256 tail_mask_load(const float *p, int64_t rem) {
    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_maskload_ps(p, m);
}

static void f32_dot4x1(const float *const *wf, const float *x, int64_t k, float *o) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(_mm256_load_ps(wf[0] + i), xv, a0);
        a1 = _mm256_fmadd_ps(_mm256_load_ps(wf[1] + i), xv, a1);
        a2 = _mm256_fmadd_ps(_mm256_load_ps(wf[2] + i), xv, a2);
        a3 = _mm256_fmadd_ps(_mm256_load_ps(wf[3] + i), xv, a3);
    }
    if (i < k) {
        __m256 xv = tail_mask_load(x + i, k - i);
        a0 = _mm256_fmadd_ps(_mm256_load_ps(wf[0] + i), xv, a0);
        a1 = _mm256_fmadd_ps(_mm256_load_ps(wf[1] + i), xv, a1);
        a2 = _mm256_fmadd_ps(_mm256_load_ps(wf[2] + i), xv, a2);
        a3 = _mm256_fmadd_ps(_mm256_load_ps(wf[3] + i), xv, a3);
    }
    o[0] = hsum_f32(a0); o[1] = hsum_f32(a1); o[2] = hsum_f32(a2); o[3] = hsum_f32(a3);
}

static void f32_dot4x2(const float *const *wf, const float *x0, const float *x1, int64_t k, float *o) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int64_t i = 0;
    for (; i < k; i += 8) {
        __m256 xa, xb;
        if (i + 8 <= k) { xa = _mm256_loadu_ps(x0 + i); xb = _mm256_loadu_ps(x1 + i); }
        else { xa = tail_mask_load(x0 + i, k - i); xb = tail_mask_load(x1 + i, k - i); }
        __m256 w;
        w = _mm256_load_ps(wf[0] + i); a0 = _mm256_fmadd_ps(w, xa, a0); b0 = _mm256_fmadd_ps(w, xb, b0);
        w = _mm256_load_ps(wf[1] + i); a1 = _mm256_fmadd_ps(w, xa, a1); b1 = _mm256_fmadd_ps(w, xb, b1);
        w = _mm256_load_ps(wf[2] + i); a2 = _mm256_fmadd_ps(w, xa, a2); b2 = _mm256_fmadd_ps(w, xb, b2);
        w = _mm256_load_ps(wf[3] + i); a3 = _mm256_fmadd_ps(w, xa, a3); b3 = _mm256_fmadd_ps(w, xb, b3);
    }
    o[0] = hsum_f32(a0); o[1] = hsum_f32(a1); o[2] = hsum_f32(a2); o[3] = hsum_f32(a3);
    o[4] = hsum_f32(b0); o[5] = hsum_f32(b1); o[6] = hsum_f32(b2); o[7] = hsum_f32(b3);
}

#if TRI_ISA_AVX512
#define TRI_HAVE_4X4 1
/* 512-bit micro-kernels: 4 rows x 4 tokens, 16 zmm accumulators. */
/* Named accumulators (not an array): GCC then accumulates in place instead of copying. */
#define DP4(u, xv)                                        \
    do {                                                  \
        const __m512i xv_ = (xv);                         \
        DPBUSD512(a##u##0, c0, xv_);                      \
        DPBUSD512(a##u##1, c1, xv_);                      \
        DPBUSD512(a##u##2, c2, xv_);                      \
        DPBUSD512(a##u##3, c3, xv_);                      \
    } while (0)

__attribute__((noinline)) static void i8_dot4x4(const uint8_t *const *c, const int8_t *const *x, int64_t kp, int32_t *o) {
    __m512i a00 = _mm512_setzero_si512(), a01 = a00, a02 = a00, a03 = a00;
    __m512i a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m512i a20 = a00, a21 = a00, a22 = a00, a23 = a00;
    __m512i a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    const uint8_t *p0 = c[0], *p1 = c[1], *p2 = c[2], *p3 = c[3];
    const int8_t *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    int64_t i = 0;
    for (; i + 64 <= kp; i += 64) {
        const __m512i c0 = _mm512_loadu_si512(p0 + i), c1 = _mm512_loadu_si512(p1 + i);
        const __m512i c2 = _mm512_loadu_si512(p2 + i), c3 = _mm512_loadu_si512(p3 + i);
        DP4(0, _mm512_loadu_si512(x0 + i));
        DP4(1, _mm512_loadu_si512(x1 + i));
        DP4(2, _mm512_loadu_si512(x2 + i));
        DP4(3, _mm512_loadu_si512(x3 + i));
    }
    if (i < kp) { /* kpad is a multiple of 32: one half vector left */
        const __mmask64 m = 0xFFFFFFFFull;
        const __m512i c0 = _mm512_maskz_loadu_epi8(m, p0 + i), c1 = _mm512_maskz_loadu_epi8(m, p1 + i);
        const __m512i c2 = _mm512_maskz_loadu_epi8(m, p2 + i), c3 = _mm512_maskz_loadu_epi8(m, p3 + i);
        DP4(0, _mm512_maskz_loadu_epi8(m, x0 + i));
        DP4(1, _mm512_maskz_loadu_epi8(m, x1 + i));
        DP4(2, _mm512_maskz_loadu_epi8(m, x2 + i));
        DP4(3, _mm512_maskz_loadu_epi8(m, x3 + i));
    }
    o[0] = _mm512_reduce_add_epi32(a00); o[1] = _mm512_reduce_add_epi32(a01);
    o[2] = _mm512_reduce_add_epi32(a02); o[3] = _mm512_reduce_add_epi32(a03);
    o[4] = _mm512_reduce_add_epi32(a10); o[5] = _mm512_reduce_add_epi32(a11);
    o[6] = _mm512_reduce_add_epi32(a12); o[7] = _mm512_reduce_add_epi32(a13);
    o[8] = _mm512_reduce_add_epi32(a20); o[9] = _mm512_reduce_add_epi32(a21);
    o[10] = _mm512_reduce_add_epi32(a22); o[11] = _mm512_reduce_add_epi32(a23);
    o[12] = _mm512_reduce_add_epi32(a30); o[13] = _mm512_reduce_add_epi32(a31);
    o[14] = _mm512_reduce_add_epi32(a32); o[15] = _mm512_reduce_add_epi32(a33);
}

#define FM4(u, xv)                                      \
    f##u##0 = _mm512_fmadd_ps(w0, (xv), f##u##0);       \
    f##u##1 = _mm512_fmadd_ps(w1, (xv), f##u##1);       \
    f##u##2 = _mm512_fmadd_ps(w2, (xv), f##u##2);       \
    f##u##3 = _mm512_fmadd_ps(w3, (xv), f##u##3)

__attribute__((noinline)) static void f32_dot4x4(const float *const *wf, const float *const *x, int64_t k, float *o) {
    __m512 f00 = _mm512_setzero_ps(), f01 = f00, f02 = f00, f03 = f00;
    __m512 f10 = f00, f11 = f00, f12 = f00, f13 = f00;
    __m512 f20 = f00, f21 = f00, f22 = f00, f23 = f00;
    __m512 f30 = f00, f31 = f00, f32 = f00, f33 = f00;
    const float *q0 = wf[0], *q1 = wf[1], *q2 = wf[2], *q3 = wf[3];
    const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        const __m512 w0 = _mm512_load_ps(q0 + i), w1 = _mm512_load_ps(q1 + i);
        const __m512 w2 = _mm512_load_ps(q2 + i), w3 = _mm512_load_ps(q3 + i);
        FM4(0, _mm512_loadu_ps(x0 + i));
        FM4(1, _mm512_loadu_ps(x1 + i));
        FM4(2, _mm512_loadu_ps(x2 + i));
        FM4(3, _mm512_loadu_ps(x3 + i));
    }
    if (i < k) {
        const __mmask16 m = (__mmask16)((1u << (k - i)) - 1u);
        const __m512 w0 = _mm512_load_ps(q0 + i), w1 = _mm512_load_ps(q1 + i);
        const __m512 w2 = _mm512_load_ps(q2 + i), w3 = _mm512_load_ps(q3 + i);
        FM4(0, _mm512_maskz_loadu_ps(m, x0 + i));
        FM4(1, _mm512_maskz_loadu_ps(m, x1 + i));
        FM4(2, _mm512_maskz_loadu_ps(m, x2 + i));
        FM4(3, _mm512_maskz_loadu_ps(m, x3 + i));
    }
    o[0] = _mm512_reduce_add_ps(f00); o[1] = _mm512_reduce_add_ps(f01);
    o[2] = _mm512_reduce_add_ps(f02); o[3] = _mm512_reduce_add_ps(f03);
    o[4] = _mm512_reduce_add_ps(f10); o[5] = _mm512_reduce_add_ps(f11);
    o[6] = _mm512_reduce_add_ps(f12); o[7] = _mm512_reduce_add_ps(f13);
    o[8] = _mm512_reduce_add_ps(f20); o[9] = _mm512_reduce_add_ps(f21);
    o[10] = _mm512_reduce_add_ps(f22); o[11] = _mm512_reduce_add_ps(f23);
    o[12] = _mm512_reduce_add_ps(f30); o[13] = _mm512_reduce_add_ps(f31);
    o[14] = _mm512_reduce_add_ps(f32); o[15] = _mm512_reduce_add_ps(f33);
}
#else
#define TRI_HAVE_4X4 0
static void i8_dot4x4(const uint8_t *const *c, const int8_t *const *x, int64_t kp, int32_t *o) {
    i8_dot4x2(c, x[0], x[1], kp, o);
    i8_dot4x2(c, x[2], x[3], kp, o + 8);
}
static void f32_dot4x4(const float *const *wf, const float *const *x, int64_t k, float *o) {
    f32_dot4x2(wf, x[0], x[1], k, o);
    f32_dot4x2(wf, x[2], x[3], k, o + 8);
}
#endif

#elif TRI_ISA_NEON
#include "tritium_neon.h" /* the NEON micro-kernels (build.py renders it inline) */

#else /* portable C (TRI_ISA_SCALAR) */
#define TRI_HAVE_DIRECT 0

static void decode_codes(int fmt, const uint8_t *w, int64_t nb, uint8_t *c) {
    decode_codes_scalar(fmt, w, nb, c);
}

static void i8_dot4x1(const uint8_t *const *c, const int8_t *x, int64_t kp, int32_t *o) {
    for (int r = 0; r < 4; r++) {
        const uint8_t *cr = c[r];
        int32_t s = 0;
        for (int64_t i = 0; i < kp; i++) s += (int32_t)cr[i] * (int32_t)x[i];
        o[r] = s;
    }
}

static void i8_dot4x2(const uint8_t *const *c, const int8_t *x0, const int8_t *x1, int64_t kp,
                      int32_t *o) {
    for (int r = 0; r < 4; r++) {
        const uint8_t *cr = c[r];
        int32_t s0 = 0, s1 = 0;
        for (int64_t i = 0; i < kp; i++) {
            s0 += (int32_t)cr[i] * (int32_t)x0[i];
            s1 += (int32_t)cr[i] * (int32_t)x1[i];
        }
        o[r] = s0;
        o[4 + r] = s1;
    }
}

static void gemv_direct4(int fmt, const uint8_t *const *w, const int8_t *x, int64_t nb, int32_t *o) {
    (void)fmt; (void)w; (void)x; (void)nb; (void)o; /* never called: TRI_HAVE_DIRECT == 0 */
}

static void f32_gemv_direct4(int fmt, const uint8_t *const *w, const float *x, int64_t nb, float *o) {
    (void)fmt; (void)w; (void)x; (void)nb; (void)o; /* never called: TRI_HAVE_DIRECT == 0 */
}

static void f32_dot4x1(const float *const *wf, const float *x, int64_t k, float *o) {
    for (int r = 0; r < 4; r++) {
        float s = 0.0f;
        for (int64_t i = 0; i < k; i++) s += wf[r][i] * x[i];
        o[r] = s;
    }
}

static void f32_dot4x2(const float *const *wf, const float *x0, const float *x1, int64_t k, float *o) {
    f32_dot4x1(wf, x0, k, o);
    f32_dot4x1(wf, x1, k, o + 4);
}

#define TRI_HAVE_4X4 0
static void i8_dot4x4(const uint8_t *const *c, const int8_t *const *x, int64_t kp, int32_t *o) {
    i8_dot4x2(c, x[0], x[1], kp, o);
    i8_dot4x2(c, x[2], x[3], kp, o + 8);
}
static void f32_dot4x4(const float *const *wf, const float *const *x, int64_t k, float *o) {
    f32_dot4x2(wf, x[0], x[1], k, o);
    f32_dot4x2(wf, x[2], x[3], k, o + 8);
}
#endif

/* ------------------------------------------------------------------------------------ */
/* Driver: tasks = (tile of 4 rows) x (chunk of tokens), static schedule                 */
/* ------------------------------------------------------------------------------------ */

typedef struct {
    int64_t m, k, n, row_bytes, kpad, nb;
    int64_t ldx; /* row stride of xq and of the code/float scratch rows: kpad + 64 (no 4K aliasing) */
    int fmt;
    const uint8_t *w;
    const float *x;      /* fp32 mode */
    const float *xpad;   /* fp32 mode, direct GEMV: x rows zero padded to stride ldx */
    const int8_t *xq;    /* int8 mode: m x kpad, zero padded */
    const float *sx;     /* int8 mode: per-token scale (NULL for raw output) */
    const int32_t *sumx; /* int8 mode: per-token sum of xq */
    float *y;
    int32_t *yi; /* raw int32 output (tri_gemm_i8) */
    Epi epi;
} Problem;

typedef struct {
    const Problem *P;
    int64_t nchunk, tiles_per_task, ntile;
    int direct;
    const uint8_t *zero_row;
    uint8_t *codes[TRI_MAX_THREADS]; /* per-thread scratch, allocated on first use */
    float *wf[TRI_MAX_THREADS];
    _Atomic int err;
} ProblemJob;

/* One output tile: rows r0..r0+3 (padded with a zero row) x tokens t0..t1-1. */
static void run_tile(ProblemJob *J, int64_t tile, int64_t ch, int tid) {
    const Problem *P = J->P;
    const int is_i8 = P->xq != NULL;
    const int64_t kpad = P->kpad, ldx = P->ldx, n = P->n;
    const int64_t r0 = tile * 4, nr = min64(4, n - r0);
    const int64_t t0 = ch * TRI_TOK_CHUNK, t1 = min64(P->m, t0 + TRI_TOK_CHUNK);
    const uint8_t *wr[4];
    for (int r = 0; r < 4; r++) wr[r] = r < nr ? P->w + (r0 + r) * P->row_bytes : J->zero_row;
    uint8_t *codes = NULL;
    if (!J->direct) {
        if (!J->codes[tid]) J->codes[tid] = tri_alloc((size_t)(4 * ldx));
        if (!is_i8 && !J->wf[tid]) J->wf[tid] = tri_alloc((size_t)(4 * ldx) * sizeof(float));
        codes = J->codes[tid];
        if (!codes || (!is_i8 && !J->wf[tid])) {
            atomic_store(&J->err, 1);
            return;
        }
    }
    if (is_i8) {
        const uint8_t *cr[4];
        if (!J->direct) {
            for (int r = 0; r < 4; r++) {
                decode_codes(P->fmt, wr[r], P->nb, codes + r * ldx);
                cr[r] = codes + r * ldx;
            }
        }
        for (int64_t t = t0; t < t1;) {
            int32_t acc[16];
            int nt = 1;
            if (J->direct) {
                gemv_direct4(P->fmt, wr, P->xq + t * ldx, P->nb, acc);
            } else if (TRI_HAVE_4X4 && t + 2 < t1) {
                /* 3 tokens left: the fourth slot repeats the third and its result is dropped */
                const int64_t t3 = t + 3 < t1 ? t + 3 : t + 2;
                const int8_t *xs[4] = {P->xq + t * ldx, P->xq + (t + 1) * ldx, P->xq + (t + 2) * ldx,
                                       P->xq + t3 * ldx};
                i8_dot4x4(cr, xs, kpad, acc);
                nt = t3 == t + 3 ? 4 : 3;
            } else if (t + 1 < t1) {
                i8_dot4x2(cr, P->xq + t * ldx, P->xq + (t + 1) * ldx, kpad, acc);
                nt = 2;
            } else {
                i8_dot4x1(cr, P->xq + t * ldx, kpad, acc);
            }
            for (int u = 0; u < nt; u++) {
                const int64_t tt = t + u;
                for (int64_t r = 0; r < nr; r++) {
                    int32_t v = acc[4 * u + r] - P->sumx[tt];
                    if (P->yi) P->yi[tt * n + r0 + r] = v;
                    else P->y[tt * n + r0 + r] = epi_apply(&P->epi, n, tt, r0 + r, (float)v * P->sx[tt]);
                }
            }
            t += nt;
        }
    } else if (J->direct) {
        for (int64_t t = t0; t < t1; t++) {
            float acc[4];
            f32_gemv_direct4(P->fmt, wr, P->xpad + t * ldx, P->nb, acc);
            for (int64_t r = 0; r < nr; r++)
                P->y[t * n + r0 + r] = epi_apply(&P->epi, n, t, r0 + r, acc[r]);
        }
    } else {
        const float *fr[4];
        float *wf = J->wf[tid];
        for (int r = 0; r < 4; r++) {
            uint8_t *c = codes + r * ldx;
            float *f = wf + r * ldx;
            decode_codes(P->fmt, wr[r], P->nb, c);
            for (int64_t i = 0; i < kpad; i++) f[i] = (float)c[i] - 1.0f;
            fr[r] = f;
        }
        for (int64_t t = t0; t < t1;) {
            float acc[16];
            int nt = 1;
            if (TRI_HAVE_4X4 && t + 2 < t1) {
                const int64_t t3 = t + 3 < t1 ? t + 3 : t + 2;
                const float *xs[4] = {P->x + t * P->k, P->x + (t + 1) * P->k, P->x + (t + 2) * P->k,
                                      P->x + t3 * P->k};
                f32_dot4x4(fr, xs, P->k, acc);
                nt = t3 == t + 3 ? 4 : 3;
            } else if (t + 1 < t1) {
                f32_dot4x2(fr, P->x + t * P->k, P->x + (t + 1) * P->k, P->k, acc);
                nt = 2;
            } else {
                f32_dot4x1(fr, P->x + t * P->k, P->k, acc);
            }
            for (int u = 0; u < nt; u++) {
                const int64_t tt = t + u;
                for (int64_t r = 0; r < nr; r++)
                    P->y[tt * n + r0 + r] = epi_apply(&P->epi, n, tt, r0 + r, acc[4 * u + r]);
            }
            t += nt;
        }
    }
}

/* A task is a run of tiles within one token chunk (task -> chunk-major, tiles contiguous). */
static void problem_task(void *ctx, int64_t task, int tid) {
    ProblemJob *J = ctx;
    const int64_t groups = (J->ntile + J->tiles_per_task - 1) / J->tiles_per_task;
    const int64_t ch = task / groups, g = task % groups;
    const int64_t tile1 = min64(J->ntile, (g + 1) * J->tiles_per_task);
    for (int64_t tile = g * J->tiles_per_task; tile < tile1; tile++) run_tile(J, tile, ch, tid);
}

static int run_problem(const Problem *P, int nthreads) {
    if (nthreads > TRI_MAX_THREADS) nthreads = TRI_MAX_THREADS;
    if (nthreads < 1) nthreads = 1;
    ProblemJob *J = calloc(1, sizeof(ProblemJob));
    uint8_t *zero_row = tri_alloc((size_t)P->row_bytes);
    if (!J || !zero_row) {
        free(J);
        free(zero_row);
        return 1;
    }
    /* a packed row of zero trits: code 1 everywhere */
    memset(zero_row, P->fmt == TRI_FMT_T2 ? 0x55 : 121, (size_t)P->row_bytes);
    J->P = P;
    J->zero_row = zero_row;
    J->direct = TRI_HAVE_DIRECT && (P->xq != NULL ? P->m <= TRI_GEMV_MAX_M : P->xpad != NULL);
    J->ntile = (P->n + 3) / 4;
    J->nchunk = (P->m + TRI_TOK_CHUNK - 1) / TRI_TOK_CHUNK;
    atomic_init(&J->err, 0);
    /* about 16 tasks per thread in total, but never split below one tile */
    int64_t want_groups = (16 * (int64_t)nthreads + J->nchunk - 1) / J->nchunk;
    if (want_groups < 1) want_groups = 1;
    J->tiles_per_task = (J->ntile + want_groups - 1) / want_groups;
    if (J->tiles_per_task < 1) J->tiles_per_task = 1;
    const int64_t groups = (J->ntile + J->tiles_per_task - 1) / J->tiles_per_task;
    const double work = (double)P->m * (double)P->n * (double)P->kpad;
    pool_run(problem_task, J, groups * J->nchunk, team_for_work(work, nthreads));
    int err = atomic_load(&J->err);
    for (int i = 0; i < TRI_MAX_THREADS; i++) {
        free(J->codes[i]);
        free(J->wf[i]);
    }
    free(zero_row);
    free(J);
    return err;
}

/* ------------------------------------------------------------------------------------ */
/* G2 GEMM for int8 batches of TRI_GEMM_MIN_M tokens and more (AVX-512 VNNI).            */
/*                                                                                      */
/* The packed rows are re-laid out once per weight (tri_g2_pack, cached by the runtime)  */
/* as 2-bit codes in panels of 16 output channels: byte [p][g][c] holds the codes of     */
/* channel 16 p + c at k = 4g .. 4g + 3 (k = 4g in the low two bits). One zero-extension  */
/* (16 bytes -> 16 dwords), one bit-field select (vpmultishiftqb) and one AND give a zmm  */
/* of 16 channels x 4 codes, which is the unsigned operand of vpdpbusd; the signed        */
/* operand is a 4-byte broadcast of the token's int8 activations. The micro-kernel keeps */
/* TRI_GEMM_MR tokens x TRI_GEMM_NRV zmm (16 channels each) of int32 sums in registers,   */
/* so every expanded weight vector serves MR tokens and every broadcast NRV vectors.      */
/* Tasks are (group of NRV panels) x (chunk of TRI_GEMM_MC tokens); K is split in blocks  */
/* of TRI_GEMM_KC (0: whole rows) with the partial sums kept in a per-thread tile.        */
/* ------------------------------------------------------------------------------------ */

#define TRI_HAVE_G2 TRI_ISA_AVX512

static inline int64_t g2_k4(int64_t k) { return (k + 3) / 4; }
static inline int64_t g2_n16(int64_t n) { return (n + 15) / 16; }

typedef struct {
    int fmt;
    const uint8_t *w;
    int64_t n, k, row_bytes, nb, kpad;
    uint8_t *out;
    _Atomic int oom;
} G2PackJob;

#define G2_PACK_PANELS 8 /* panels per pack task */

static void g2_pack_task(void *ctx, int64_t task, int tid) {
    G2PackJob *J = ctx;
    (void)tid;
    const int64_t k4 = g2_k4(J->k), n16 = g2_n16(J->n);
    uint8_t *codes = tri_alloc((size_t)(16 * J->kpad));
    if (!codes) {
        atomic_store(&J->oom, 1);
        return;
    }
    const int64_t p1 = min64(n16, (task + 1) * G2_PACK_PANELS);
    for (int64_t p = task * G2_PACK_PANELS; p < p1; p++) {
        for (int c = 0; c < 16; c++) {
            const int64_t row = 16 * p + c;
            if (row < J->n) decode_codes(J->fmt, J->w + row * J->row_bytes, J->nb, codes + c * J->kpad);
            else memset(codes + c * J->kpad, 1, (size_t)J->kpad); /* a zero-trit channel */
        }
        uint8_t *o = J->out + p * k4 * 16;
        for (int64_t g = 0; g < k4; g++)
            for (int c = 0; c < 16; c++) {
                const uint8_t *s = codes + c * J->kpad + 4 * g;
                o[g * 16 + c] = (uint8_t)(s[0] | (s[1] << 2) | (s[2] << 4) | (s[3] << 6));
            }
    }
    free(codes);
}

TRI_EXPORT int64_t tri_g2_bytes(int fmt, int64_t n, int64_t k) {
    (void)fmt;
    return TRI_HAVE_G2 ? g2_n16(n) * g2_k4(k) * 16 : 0;
}

TRI_EXPORT int tri_g2_pack(int fmt, const uint8_t *w, int64_t n, int64_t k, int64_t row_bytes,
                           uint8_t *out, int nthreads) {
    G2PackJob J = {.fmt = fmt, .w = w, .n = n, .k = k, .row_bytes = row_bytes, .out = out};
    J.nb = n_blocks(fmt, k);
    J.kpad = J.nb * blk_elems(fmt);
    atomic_init(&J.oom, 0);
    const int64_t n16 = g2_n16(n);
    pool_run(g2_pack_task, &J, (n16 + G2_PACK_PANELS - 1) / G2_PACK_PANELS, nthreads);
    return atomic_load(&J.oom);
}

#if TRI_HAVE_G2
#define G2_MR TRI_GEMM_MR
#define G2_NRV TRI_GEMM_NRV
#define G2_NR (16 * TRI_GEMM_NRV)
#define G2_TILE_ROWS (((TRI_GEMM_MC + G2_MR - 1) / G2_MR) * G2_MR)

typedef int32_t tri_i32u __attribute__((may_alias, aligned(1)));

/* The intrinsic, not DPBUSD512: in these fully unrolled kernels GCC 12 keeps the
 * accumulators in place with it, while the asm form costs register copies in the loop. */
#define G2_DP(acc, w, x) acc = _mm512_dpbusd_epi32(acc, w, x)

/* 16 bytes (16 channels x 4 two-bit codes) -> 16 dwords of 4 code bytes (0..2). */
static inline __m512i g2_expand(const uint8_t *p) {
    const __m512i t = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
#if defined(__AVX512VBMI__)
    /* byte i of each qword takes the 8 bits at 32 (i / 4) + 2 (i % 4) */
    const __m512i sel = _mm512_set1_epi64(0x2624222006040200LL);
    return _mm512_and_si512(_mm512_multishift_epi64_epi8(sel, t), _mm512_set1_epi8(3));
#else
    __m512i r = _mm512_ternarylogic_epi32(t, _mm512_slli_epi32(t, 6), _mm512_slli_epi32(t, 12), 0xFE);
    return _mm512_ternarylogic_epi32(r, _mm512_slli_epi32(t, 18), _mm512_set1_epi8(3), 0xA8);
#endif
}

/* c[r][16 v + j] (+)= sum over groups g0..g1-1 of codes . activations, for R <= MR tokens x
 * NRV zmm. Always inlined into one function per R, so every loop below has constant bounds
 * and the accumulators live in registers. */
static inline __attribute__((always_inline)) void g2_micro_body(
    const int R, const int U, const int8_t *const *xr, const uint8_t *const *wp, int64_t g0,
    int64_t g1, int32_t *c, int acc_in) {
    /* U = 0: wp[v] are G2 panels (2-bit, expanded here); U = 1: wp[v] point into a block
     * already expanded by g2_unpack (zmm v of group g at (g - g0) * NRV + v) */
    const int64_t S = U ? 64 * G2_NRV : 16;
    __m512i acc[G2_MR][G2_NRV];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < G2_NRV; v++)
            acc[r][v] = acc_in ? _mm512_loadu_si512(c + r * G2_NR + 16 * v) : _mm512_setzero_si512();
    const uint8_t *w[G2_NRV];
    const int8_t *x[G2_MR];
#pragma GCC unroll 4
    for (int v = 0; v < G2_NRV; v++) w[v] = wp[v] + (U ? 0 : 16 * g0);
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) x[r] = xr[r] + 4 * g0;
    /* fewer than 8 accumulators cannot hide the vpdpbusd latency: then odd groups go to a
     * second set, added at the end */
    const int SPLIT = R * G2_NRV < 8;
    __m512i acc2[G2_MR][G2_NRV];
    if (SPLIT) {
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int v = 0; v < G2_NRV; v++) acc2[r][v] = _mm512_setzero_si512();
    }
    int64_t g = g0;
    if (SPLIT) {
        for (; g + 2 <= g1; g += 2) {
            __m512i wv[G2_NRV], wu[G2_NRV];
#pragma GCC unroll 4
            for (int v = 0; v < G2_NRV; v++) {
#if TRI_GEMM_PF
                if (!U && ((uintptr_t)w[v] & 63) == 0) _mm_prefetch((const char *)(w[v] + TRI_GEMM_PF), _MM_HINT_T0);
#endif
                wv[v] = U ? _mm512_load_si512(w[v]) : g2_expand(w[v]);
                wu[v] = U ? _mm512_load_si512(w[v] + S) : g2_expand(w[v] + S);
                w[v] += 2 * S;
            }
#pragma GCC unroll 16
            for (int r = 0; r < R; r++) {
                const __m512i xb = _mm512_set1_epi32(*(const tri_i32u *)x[r]);
                const __m512i xc = _mm512_set1_epi32(*(const tri_i32u *)(x[r] + 4));
                x[r] += 8;
#pragma GCC unroll 4
                for (int v = 0; v < G2_NRV; v++) {
                    G2_DP(acc[r][v], wv[v], xb);
                    G2_DP(acc2[r][v], wu[v], xc);
                }
            }
        }
    }
    for (; g < g1; g++) {
        __m512i wv[G2_NRV];
#pragma GCC unroll 4
        for (int v = 0; v < G2_NRV; v++) {
#if TRI_GEMM_PF
            if (!U && ((uintptr_t)w[v] & 63) == 0) _mm_prefetch((const char *)(w[v] + TRI_GEMM_PF), _MM_HINT_T0);
#endif
            wv[v] = U ? _mm512_load_si512(w[v]) : g2_expand(w[v]);
            w[v] += S;
        }
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) {
            const __m512i xb = _mm512_set1_epi32(*(const tri_i32u *)x[r]);
            x[r] += 4;
#pragma GCC unroll 4
            for (int v = 0; v < G2_NRV; v++) G2_DP(acc[r][v], wv[v], xb);
        }
    }
    if (SPLIT) {
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int v = 0; v < G2_NRV; v++) acc[r][v] = _mm512_add_epi32(acc[r][v], acc2[r][v]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < G2_NRV; v++) _mm512_storeu_si512(c + r * G2_NR + 16 * v, acc[r][v]);
}

typedef void (*g2_micro_fn)(const int8_t *const *, const uint8_t *const *, int64_t, int64_t,
                            int32_t *, int);
#define G2_MICRO(R)                                                                          \
    __attribute__((noinline)) static void g2_micro_##R(const int8_t *const *xr,             \
                                                       const uint8_t *const *wp, int64_t g0, \
                                                       int64_t g1, int32_t *c, int acc_in) { \
        g2_micro_body(R, 0, xr, wp, g0, g1, c, acc_in);                                      \
    }                                                                                        \
    __attribute__((noinline)) static void g2_microu_##R(const int8_t *const *xr,            \
                                                        const uint8_t *const *wp, int64_t g0, \
                                                        int64_t g1, int32_t *c, int acc_in) { \
        g2_micro_body(R, 1, xr, wp, g0, g1, c, acc_in);                                      \
    }
G2_MICRO(1)
#if G2_MR >= 2
G2_MICRO(2)
#endif
#if G2_MR >= 3
G2_MICRO(3)
#endif
#if G2_MR >= 4
G2_MICRO(4)
#endif
#if G2_MR >= 5
G2_MICRO(5)
#endif
#if G2_MR >= 6
G2_MICRO(6)
#endif
#if G2_MR >= 7
G2_MICRO(7)
#endif
#if G2_MR >= 8
G2_MICRO(8)
#endif
#if G2_MR >= 9
G2_MICRO(9)
#endif
#if G2_MR >= 10
G2_MICRO(10)
#endif
#if G2_MR >= 11
G2_MICRO(11)
#endif
#if G2_MR >= 12
G2_MICRO(12)
#endif
#if G2_MR > 12
#error "TRI_GEMM_MR above 12 is not supported"
#endif

/* g2_micro_tab[U][R] runs R tokens (1 <= R <= MR) on packed (U = 0) or expanded (U = 1)
 * weights: a batch tail costs only its own rows */
static const g2_micro_fn g2_micro_tab[2][G2_MR + 1] = {
    {NULL, g2_micro_1,
#if G2_MR >= 2
     g2_micro_2,
#endif
#if G2_MR >= 3
     g2_micro_3,
#endif
#if G2_MR >= 4
     g2_micro_4,
#endif
#if G2_MR >= 5
     g2_micro_5,
#endif
#if G2_MR >= 6
     g2_micro_6,
#endif
#if G2_MR >= 7
     g2_micro_7,
#endif
#if G2_MR >= 8
     g2_micro_8,
#endif
#if G2_MR >= 9
     g2_micro_9,
#endif
#if G2_MR >= 10
     g2_micro_10,
#endif
#if G2_MR >= 11
     g2_micro_11,
#endif
#if G2_MR >= 12
     g2_micro_12,
#endif
    },
    {NULL, g2_microu_1,
#if G2_MR >= 2
     g2_microu_2,
#endif
#if G2_MR >= 3
     g2_microu_3,
#endif
#if G2_MR >= 4
     g2_microu_4,
#endif
#if G2_MR >= 5
     g2_microu_5,
#endif
#if G2_MR >= 6
     g2_microu_6,
#endif
#if G2_MR >= 7
     g2_microu_7,
#endif
#if G2_MR >= 8
     g2_microu_8,
#endif
#if G2_MR >= 9
     g2_microu_9,
#endif
#if G2_MR >= 10
     g2_microu_10,
#endif
#if G2_MR >= 11
     g2_microu_11,
#endif
#if G2_MR >= 12
     g2_microu_12,
#endif
    },
};

/* Expand groups g0..g1-1 of NRV panels into buf ([g - g0][v] zmm). */
static void g2_unpack(const uint8_t *const *wp, int64_t g0, int64_t g1, uint8_t *buf) {
    for (int64_t g = g0; g < g1; g++)
        for (int v = 0; v < G2_NRV; v++)
            _mm512_store_si512(buf + ((g - g0) * G2_NRV + v) * 64, g2_expand(wp[v] + 16 * g));
}

/* y[t, c0 .. c0 + cnt) from the int32 sums of one token and 16 channels. */
static void g2_epilogue(const Problem *P, int64_t t, int64_t c0, int cnt, const int32_t *acc) {
    const int64_t n = P->n;
    const __mmask16 m = (__mmask16)(cnt >= 16 ? 0xFFFFu : ((1u << cnt) - 1u));
    const __m512i v = _mm512_sub_epi32(_mm512_loadu_si512(acc), _mm512_set1_epi32(P->sumx[t]));
    if (P->yi) {
        _mm512_mask_storeu_epi32(P->yi + t * n + c0, m, v);
        return;
    }
    const Epi *e = &P->epi;
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(P->sx[t]));
    f = _mm512_mul_ps(f, e->nscale == 1 ? _mm512_set1_ps(e->scale[0]) : _mm512_maskz_loadu_ps(m, e->scale + c0));
    if (e->bias) f = _mm512_add_ps(f, _mm512_maskz_loadu_ps(m, e->bias + c0));
    if (e->residual) f = _mm512_add_ps(f, _mm512_maskz_loadu_ps(m, e->residual + t * n + c0));
    float *dst = P->y + t * n + c0;
    switch (e->act) {
    case TRI_ACT_NONE: break;
    case TRI_ACT_RELU: f = _mm512_max_ps(f, _mm512_setzero_ps()); break;
    case TRI_ACT_RELU6: f = _mm512_min_ps(_mm512_max_ps(f, _mm512_setzero_ps()), _mm512_set1_ps(6.0f)); break;
    default:
        _mm512_mask_storeu_ps(dst, m, f);
        for (int j = 0; j < cnt; j++) dst[j] = act_apply(e->act, dst[j]);
        return;
    }
    _mm512_mask_storeu_ps(dst, m, f);
}

typedef struct {
    const Problem *P;
    const uint8_t *gw;
    int64_t n16, k4, ngroups;
    int32_t *tile[TRI_MAX_THREADS]; /* per-thread MC x NR partial sums, allocated on first use */
    uint8_t *wbuf[TRI_MAX_THREADS]; /* per-thread expanded weight block (TRI_GEMM_UNPACK) */
    _Atomic int err;
} G2Job;

/* task = chunk * ngroups + group: consecutive tasks share the chunk's activations */
static void g2_task(void *ctx, int64_t task, int tid) {
    G2Job *J = ctx;
    const Problem *P = J->P;
    const int64_t grp = task % J->ngroups, ch = task / J->ngroups;
    const int64_t t0 = ch * TRI_GEMM_MC, t1 = min64(P->m, t0 + TRI_GEMM_MC);
    const int64_t p0 = grp * G2_NRV;
    if (!J->tile[tid]) J->tile[tid] = tri_alloc((size_t)G2_TILE_ROWS * G2_NR * sizeof(int32_t));
    int32_t *tile = J->tile[tid];
    if (!tile) {
        atomic_store(&J->err, 1);
        return;
    }
    const uint8_t *wp[G2_NRV];
    for (int v = 0; v < G2_NRV; v++) wp[v] = J->gw + min64(p0 + v, J->n16 - 1) * J->k4 * 16;
    const int64_t kcg = TRI_GEMM_KC > 0 ? TRI_GEMM_KC / 4 : J->k4;
    /* expand the weights once per block when more than one micro-kernel call will use them */
    const int unpack = TRI_GEMM_UNPACK && t1 - t0 > G2_MR;
    uint8_t *buf = NULL;
    if (unpack) {
        if (!J->wbuf[tid]) J->wbuf[tid] = tri_alloc((size_t)(min64(kcg, J->k4) * G2_NR * 4));
        buf = J->wbuf[tid];
        if (!buf) {
            atomic_store(&J->err, 1);
            return;
        }
    }
    const uint8_t *bp[G2_NRV];
    for (int v = 0; v < G2_NRV; v++) bp[v] = buf + 64 * v;
    if (J->k4 == 0) memset(tile, 0, (size_t)G2_TILE_ROWS * G2_NR * sizeof(int32_t)); /* K = 0 */
    for (int64_t g0 = 0; g0 < J->k4; g0 += kcg) {
        const int64_t g1 = min64(J->k4, g0 + kcg);
        if (unpack) g2_unpack(wp, g0, g1, buf);
        for (int64_t t = t0; t < t1; t += G2_MR) {
            const int rows = (int)min64(G2_MR, t1 - t);
            const int8_t *xr[G2_MR];
            for (int r = 0; r < rows; r++) xr[r] = P->xq + (t + r) * P->ldx;
            g2_micro_tab[unpack][rows](xr, unpack ? bp : wp, g0, g1, tile + (t - t0) * G2_NR, g0 > 0);
        }
    }
    for (int64_t t = t0; t < t1; t++)
        for (int v = 0; v < G2_NRV; v++) {
            const int64_t c0 = (p0 + v) * 16;
            if (c0 >= P->n) break;
            g2_epilogue(P, t, c0, (int)min64(16, P->n - c0), tile + (t - t0) * G2_NR + 16 * v);
        }
}

/* The int8 GEMM on the G2 layout gw (NULL: re-laid out here for this call). */
static int run_g2(const Problem *P, const uint8_t *gw, int nthreads) {
    if (nthreads > TRI_MAX_THREADS) nthreads = TRI_MAX_THREADS;
    if (nthreads < 1) nthreads = 1;
    uint8_t *own = NULL;
    if (!gw) {
        own = tri_alloc((size_t)tri_g2_bytes(P->fmt, P->n, P->k));
        if (!own || tri_g2_pack(P->fmt, P->w, P->n, P->k, P->row_bytes, own, nthreads)) {
            free(own);
            return 1;
        }
        gw = own;
    }
    G2Job *J = calloc(1, sizeof(G2Job));
    if (!J) {
        free(own);
        return 1;
    }
    J->P = P;
    J->gw = gw;
    J->n16 = g2_n16(P->n);
    J->k4 = g2_k4(P->k);
    J->ngroups = (J->n16 + G2_NRV - 1) / G2_NRV;
    atomic_init(&J->err, 0);
    const int64_t nchunk = (P->m + TRI_GEMM_MC - 1) / TRI_GEMM_MC;
    const double work = (double)P->m * (double)P->n * (double)P->k;
    pool_run(g2_task, J, J->ngroups * nchunk, team_for_work(work, nthreads));
    int err = atomic_load(&J->err);
    for (int i = 0; i < TRI_MAX_THREADS; i++) {
        free(J->tile[i]);
        free(J->wbuf[i]);
    }
    free(J);
    free(own);
    return err;
}
#else
static int run_g2(const Problem *P, const uint8_t *gw, int nthreads) {
    (void)P; (void)gw; (void)nthreads;
    return 1; /* never called: TRI_HAVE_G2 == 0 */
}
#endif

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
        if (!TRI_HAVE_DIRECT || m > 3) return run_problem(&P, nthreads);
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
