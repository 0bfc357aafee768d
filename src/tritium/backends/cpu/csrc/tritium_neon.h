/* Tritium CPU kernels: the NEON (aarch64) micro-kernels.
 *
 * Included by tritium_kernels.c in place of the portable micro-kernels when TRI_ISA_NEON is
 * 1 (build.py renders this file into the translation unit). It provides the same interface:
 *   decode_codes, i8_dot4x1/4x2/4x4, f32_dot4x1/4x2/4x4, gemv_direct4, f32_gemv_direct4,
 *   TRI_HAVE_DIRECT, TRI_HAVE_4X4.
 * Integer products: the codes (0..2) fit a signed byte, so code x activation is a signed
 * byte product. With __ARM_FEATURE_DOTPROD (armv8.2-a+dotprod) four of them go into each
 * int32 lane per sdot; without it, smull/smlal2 build int16 partial sums (each step adds at
 * most 2 * 2 * 127 = 508 to a lane, so 64 steps stay below 32768) widened with sadalp.
 * t1.6 digits: q = v / 9 (a multiply-high, exact for v < 256) and r = v - 9 q; the top digit
 * by two compares, the other four by byte-table lookups (tbl) of numbers 0..8.
 */
#ifndef TRITIUM_NEON_H
#define TRITIUM_NEON_H

#define TRI_HAVE_DIRECT 1
#define TRI_HAVE_4X4 1

#if defined(__ARM_FEATURE_DOTPROD)
#define TRI_NEON_DOTPROD 1
#else
#define TRI_NEON_DOTPROD 0
#endif

/* The two base-3 digits (high, low) of 0..8; entries 9..15 only serve invalid bytes > 242. */
static const uint8_t g_neon_d9_hi[16] __attribute__((aligned(16))) = {0, 0, 0, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1};
static const uint8_t g_neon_d9_lo[16] __attribute__((aligned(16))) = {0, 1, 2, 0, 1, 2, 0, 1, 2, 1, 1, 1, 1, 1, 1, 1};

/* One-register tables only: GCC 12 round-trips the two-register tables of tbl through the
 * stack. */
typedef struct {
    uint8x16_t hi, lo;
} NeonT16Tabs;

static inline NeonT16Tabs neon_t16_tabs(void) {
    NeonT16Tabs t;
    t.hi = vld1q_u8(g_neon_d9_hi);
    t.lo = vld1q_u8(g_neon_d9_lo);
    return t;
}

/* The five code vectors (most significant digit first) of 16 t1.6 bytes v = 81 c0 + 27 c1 +
 * 9 c2 + 3 c3 + c4: q = v / 9 = 9 c0 + 3 c1 + c2 and r = v - 9 q = 3 c3 + c4; c0 counts the
 * thresholds 9 and 18 that q reaches, and the digits of q - 9 c0 and of r (both 0..8) are
 * table lookups. floor(v * 57 / 512) == floor(v / 9) for every v in 0..255 (57/512 - 1/9 =
 * 1/(9*512)). */
static inline __attribute__((always_inline)) void neon_t16_decode(const NeonT16Tabs *t, uint8x16_t v,
                                                                  uint8x16_t *c) {
    const uint8x8_t k57 = vdup_n_u8(57);
    const uint8x16_t k9 = vdupq_n_u8(9);
    const uint8x8_t q_lo = vshrn_n_u16(vmull_u8(vget_low_u8(v), k57), 8);
    const uint8x16_t q = vshrq_n_u8(vshrn_high_n_u16(q_lo, vmull_high_u8(v, vdupq_n_u8(57)), 8), 1);
    const uint8x16_t r = vmlsq_u8(v, q, k9);
    /* the compares give 0 or 0xFF (-1 as a signed byte) */
    const int8x16_t m = vreinterpretq_s8_u8(vaddq_u8(vcgeq_u8(q, k9), vcgeq_u8(q, vdupq_n_u8(18))));
    const uint8x16_t c0 = vreinterpretq_u8_s8(vnegq_s8(m));
    const uint8x16_t q9 = vmlsq_u8(q, c0, k9);
    c[0] = c0;
    c[1] = vqtbl1q_u8(t->hi, q9);
    c[2] = vqtbl1q_u8(t->lo, q9);
    c[3] = vqtbl1q_u8(t->hi, r);
    c[4] = vqtbl1q_u8(t->lo, r);
}

/* The four code vectors of 16 t2 bytes. */
static inline __attribute__((always_inline)) void neon_t2_decode(uint8x16_t v, uint8x16_t *c) {
    const uint8x16_t m3 = vdupq_n_u8(3);
    c[0] = vandq_u8(v, m3);
    c[1] = vandq_u8(vshrq_n_u8(v, 2), m3);
    c[2] = vandq_u8(vshrq_n_u8(v, 4), m3);
    c[3] = vshrq_n_u8(v, 6);
}

static void decode_codes(int fmt, const uint8_t *w, int64_t nb, uint8_t *c) {
    if (fmt == TRI_FMT_T2) {
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *d = c + b * TRI_T2_BLOCK;
#pragma GCC unroll 16
            for (int h = 0; h < 2; h++) {
                uint8x16_t cv[4];
                neon_t2_decode(vld1q_u8(w + b * 32 + 16 * h), cv);
#pragma GCC unroll 16
                for (int i = 0; i < 4; i++) vst1q_u8(d + 32 * i + 16 * h, cv[i]);
            }
        }
    } else {
        const NeonT16Tabs t = neon_t16_tabs();
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *d = c + b * TRI_T16_BLOCK;
#pragma GCC unroll 16
            for (int h = 0; h < 2; h++) {
                uint8x16_t cv[5];
                neon_t16_decode(&t, vld1q_u8(w + b * 32 + 16 * h), cv);
#pragma GCC unroll 16
                for (int i = 0; i < 5; i++) vst1q_u8(d + 32 * i + 16 * h, cv[i]);
            }
        }
    }
}

/* ---- int8 products ------------------------------------------------------------------- */

#if TRI_NEON_DOTPROD
#define NEON_DOT(acc, c, x) acc = vdotq_s32(acc, vreinterpretq_s8_u8(c), (x))
#endif

/* int16 step without dotprod: p += c[0:8] * x[0:8] + c[8:16] * x[8:16] lane-wise. */
#define NEON_MLAL(p, c, x)                                                          \
    do {                                                                            \
        const int8x16_t cs_ = vreinterpretq_s8_u8(c), xs_ = (x);                    \
        p = vmlal_s8(p, vget_low_s8(cs_), vget_low_s8(xs_));                        \
        p = vmlal_high_s8(p, cs_, xs_);                                             \
    } while (0)

/* Steps of 16 bytes per int16 run (64 * 508 < 32768). */
#define NEON_RUN (64 * 16)

/* sum_i c[r][i] * x[u][i] over kp bytes (kp a multiple of 32) for 4 code rows x nt tokens. */
static inline __attribute__((always_inline)) void neon_i8_dot(const uint8_t *const *c,
                                                              const int8_t *const *x, int nt,
                                                              int64_t kp, int32_t *o) {
#if TRI_NEON_DOTPROD
    int32x4_t a[4][4];
#pragma GCC unroll 16
    for (int u = 0; u < nt; u++)
#pragma GCC unroll 16
        for (int r = 0; r < 4; r++) a[u][r] = vdupq_n_s32(0);
    for (int64_t i = 0; i < kp; i += 16) {
        const uint8x16_t c0 = vld1q_u8(c[0] + i), c1 = vld1q_u8(c[1] + i);
        const uint8x16_t c2 = vld1q_u8(c[2] + i), c3 = vld1q_u8(c[3] + i);
#pragma GCC unroll 16
        for (int u = 0; u < nt; u++) {
            const int8x16_t xv = vld1q_s8(x[u] + i);
            NEON_DOT(a[u][0], c0, xv);
            NEON_DOT(a[u][1], c1, xv);
            NEON_DOT(a[u][2], c2, xv);
            NEON_DOT(a[u][3], c3, xv);
        }
    }
#pragma GCC unroll 16
    for (int u = 0; u < nt; u++)
#pragma GCC unroll 16
        for (int r = 0; r < 4; r++) o[4 * u + r] = vaddvq_s32(a[u][r]);
#else
    int32_t acc[16] = {0};
    for (int64_t i0 = 0; i0 < kp; i0 += NEON_RUN) {
        const int64_t i1 = min64(kp, i0 + NEON_RUN);
        int16x8_t p[4][4];
#pragma GCC unroll 16
        for (int u = 0; u < nt; u++)
#pragma GCC unroll 16
            for (int r = 0; r < 4; r++) p[u][r] = vdupq_n_s16(0);
        for (int64_t i = i0; i < i1; i += 16) {
            const uint8x16_t c0 = vld1q_u8(c[0] + i), c1 = vld1q_u8(c[1] + i);
            const uint8x16_t c2 = vld1q_u8(c[2] + i), c3 = vld1q_u8(c[3] + i);
#pragma GCC unroll 16
            for (int u = 0; u < nt; u++) {
                const int8x16_t xv = vld1q_s8(x[u] + i);
                NEON_MLAL(p[u][0], c0, xv);
                NEON_MLAL(p[u][1], c1, xv);
                NEON_MLAL(p[u][2], c2, xv);
                NEON_MLAL(p[u][3], c3, xv);
            }
        }
#pragma GCC unroll 16
        for (int u = 0; u < nt; u++)
#pragma GCC unroll 16
            for (int r = 0; r < 4; r++) acc[4 * u + r] += vaddlvq_s16(p[u][r]);
    }
#pragma GCC unroll 16
    for (int j = 0; j < 4 * nt; j++) o[j] = acc[j];
#endif
}

static void i8_dot4x1(const uint8_t *const *c, const int8_t *x, int64_t kp, int32_t *o) {
    const int8_t *xs[1] = {x};
    neon_i8_dot(c, xs, 1, kp, o);
}

static void i8_dot4x2(const uint8_t *const *c, const int8_t *x0, const int8_t *x1, int64_t kp,
                      int32_t *o) {
    const int8_t *xs[2] = {x0, x1};
    neon_i8_dot(c, xs, 2, kp, o);
}

__attribute__((noinline)) static void i8_dot4x4(const uint8_t *const *c, const int8_t *const *x,
                                                int64_t kp, int32_t *o) {
    neon_i8_dot(c, x, 4, kp, o);
}

/* acc += the products of one packed block of one row (t2: 4 digits, t1.6: 5) with the block's
 * activations xv[2 i + h] (digit i, half h of the 32 bytes). Each half is decoded and used at
 * once, which keeps the live vectors within the 32 registers. */
static inline __attribute__((always_inline)) int32x4_t neon_row_blk(int fmt, const NeonT16Tabs *t,
                                                                    const uint8_t *wb, const int8x16_t *xv,
                                                                    int32x4_t acc) {
    const int nd = fmt == TRI_FMT_T2 ? 4 : 5;
#if !TRI_NEON_DOTPROD
    int16x8_t p = vdupq_n_s16(0); /* at most 10 steps: |p| <= 5080 */
#endif
#pragma GCC unroll 16
    for (int h = 0; h < 2; h++) {
        uint8x16_t c[5];
        if (fmt == TRI_FMT_T2) neon_t2_decode(vld1q_u8(wb + 16 * h), c);
        else neon_t16_decode(t, vld1q_u8(wb + 16 * h), c);
#pragma GCC unroll 16
        for (int i = 0; i < nd; i++) {
#if TRI_NEON_DOTPROD
            NEON_DOT(acc, c[i], xv[2 * i + h]);
#else
            NEON_MLAL(p, c[i], xv[2 * i + h]);
#endif
        }
    }
#if TRI_NEON_DOTPROD
    return acc;
#else
    return vpadalq_s16(acc, p);
#endif
}

/* int8 GEMV straight from the packed bytes (x zero padded to nb whole blocks): two passes of
 * two rows sharing each block's activation vectors (four rows at once spill registers). */
static inline __attribute__((always_inline)) void neon_gemv(int fmt, const uint8_t *const *w,
                                                            const int8_t *x, int64_t nb, int32_t *o) {
    const int64_t be = fmt == TRI_FMT_T2 ? TRI_T2_BLOCK : TRI_T16_BLOCK;
    const int nx = fmt == TRI_FMT_T2 ? 8 : 10;
    const NeonT16Tabs t = neon_t16_tabs();
    for (int r = 0; r < 4; r += 2) {
        const uint8_t *wa = w[r], *wb = w[r + 1];
        int32x4_t a0 = vdupq_n_s32(0), a1 = a0;
        for (int64_t b = 0; b < nb; b++) {
            int8x16_t xv[10];
#pragma GCC unroll 16
            for (int i = 0; i < nx; i++) xv[i] = vld1q_s8(x + b * be + 16 * i);
            a0 = neon_row_blk(fmt, &t, wa + b * 32, xv, a0);
            a1 = neon_row_blk(fmt, &t, wb + b * 32, xv, a1);
        }
        o[r] = vaddvq_s32(a0);
        o[r + 1] = vaddvq_s32(a1);
    }
}

static void gemv_direct4(int fmt, const uint8_t *const *w, const int8_t *x, int64_t nb, int32_t *o,
                         int64_t pf) {
    (void)pf; /* the NEON GEMV does not prefetch (not measured on an aarch64 machine) */
    if (fmt == TRI_FMT_T2) neon_gemv(TRI_FMT_T2, w, x, nb, o);
    else neon_gemv(TRI_FMT_T16, w, x, nb, o);
}

/* ---- fp32 activations ------------------------------------------------------------------ */

/* acc += (codes - 1) * x[0:16] for 16 codes: trits widened to int32 and converted. */
static inline __attribute__((always_inline)) void neon_fma_codes16(uint8x16_t c, const float *x,
                                                                   float32x4_t *a0, float32x4_t *a1) {
    const int8x16_t t = vreinterpretq_s8_u8(vsubq_u8(c, vdupq_n_u8(1)));
    const int16x8_t lo = vmovl_s8(vget_low_s8(t)), hi = vmovl_high_s8(t);
    *a0 = vfmaq_f32(*a0, vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), vld1q_f32(x));
    *a1 = vfmaq_f32(*a1, vcvtq_f32_s32(vmovl_high_s16(lo)), vld1q_f32(x + 4));
    *a0 = vfmaq_f32(*a0, vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), vld1q_f32(x + 8));
    *a1 = vfmaq_f32(*a1, vcvtq_f32_s32(vmovl_high_s16(hi)), vld1q_f32(x + 12));
}

/* acc += one packed block of one row times its fp32 activations xb (two accumulators). */
static inline __attribute__((always_inline)) void neon_f32_row_blk(int fmt, const NeonT16Tabs *t,
                                                                   const uint8_t *wb, const float *xb,
                                                                   float32x4_t *a0, float32x4_t *a1) {
    const int nd = fmt == TRI_FMT_T2 ? 4 : 5;
#pragma GCC unroll 16
    for (int h = 0; h < 2; h++) {
        uint8x16_t c[5];
        if (fmt == TRI_FMT_T2) neon_t2_decode(vld1q_u8(wb + 16 * h), c);
        else neon_t16_decode(t, vld1q_u8(wb + 16 * h), c);
#pragma GCC unroll 16
        for (int i = 0; i < nd; i++) neon_fma_codes16(c[i], xb + 32 * i + 16 * h, a0, a1);
    }
}

/* fp32 GEMV from the packed bytes (x zero padded to nb whole blocks), one row at a time: x
 * (re-read from L1 per row) is not shared in registers, which would need 40 of them per block. */
static inline __attribute__((always_inline)) void neon_f32_gemv(int fmt, const uint8_t *const *w,
                                                                const float *x, int64_t nb, float *o) {
    const int64_t be = fmt == TRI_FMT_T2 ? TRI_T2_BLOCK : TRI_T16_BLOCK;
    const NeonT16Tabs t = neon_t16_tabs();
    for (int r = 0; r < 4; r++) {
        const uint8_t *wr = w[r];
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0;
        for (int64_t b = 0; b < nb; b++) neon_f32_row_blk(fmt, &t, wr + b * 32, x + b * be, &a0, &a1);
        o[r] = vaddvq_f32(vaddq_f32(a0, a1));
    }
}

static void f32_gemv_direct4(int fmt, const uint8_t *const *w, const float *x, int64_t nb, float *o,
                             int64_t pf, int xperm) {
    (void)pf; (void)xperm;
    if (fmt == TRI_FMT_T2) neon_f32_gemv(TRI_FMT_T2, w, x, nb, o);
    else neon_f32_gemv(TRI_FMT_T16, w, x, nb, o);
}

/* sum_i wf[r][i] * x[u][i] over k for 4 decoded float rows (readable up to k rounded up to 4)
 * x 1, 2 or 4 tokens. The x rows hold exactly k floats: their last k mod 4 go through a zero
 * padded copy made before the loop. Named accumulators (not an array): GCC otherwise stores
 * the array to the stack on every iteration. */
#define NF_DECL(u)                                                                           \
    float32x4_t a##u##0 = vdupq_n_f32(0.0f), a##u##1 = a##u##0, a##u##2 = a##u##0, a##u##3 = a##u##0
#define NF_LOADW(i)                                                                          \
    const float32x4_t w0 = vld1q_f32(wf[0] + (i)), w1 = vld1q_f32(wf[1] + (i));             \
    const float32x4_t w2 = vld1q_f32(wf[2] + (i)), w3 = vld1q_f32(wf[3] + (i))
#define NF_FMA(u, p)                                                                         \
    do {                                                                                     \
        const float32x4_t xv_ = vld1q_f32(p);                                                \
        a##u##0 = vfmaq_f32(a##u##0, w0, xv_);                                               \
        a##u##1 = vfmaq_f32(a##u##1, w1, xv_);                                               \
        a##u##2 = vfmaq_f32(a##u##2, w2, xv_);                                               \
        a##u##3 = vfmaq_f32(a##u##3, w3, xv_);                                               \
    } while (0)
#define NF_OUT(u)                                                                            \
    do {                                                                                     \
        o[4 * (u)] = vaddvq_f32(a##u##0); o[4 * (u) + 1] = vaddvq_f32(a##u##1);              \
        o[4 * (u) + 2] = vaddvq_f32(a##u##2); o[4 * (u) + 3] = vaddvq_f32(a##u##3);          \
    } while (0)

/* tail[u][0 : k - kb] = x[u][kb : k], zeros after; returns kb = k rounded down to 4. */
static inline int64_t neon_f32_tails(const float *const *x, int nt, int64_t k, float (*tail)[4]) {
    const int64_t kb = k & ~(int64_t)3;
#pragma GCC unroll 16
    for (int u = 0; u < nt; u++)
#pragma GCC unroll 16
        for (int j = 0; j < 4; j++) tail[u][j] = kb + j < k ? x[u][kb + j] : 0.0f;
    return kb;
}

static void f32_dot4x1(const float *const *wf, const float *x, int64_t k, float *o) {
    float tail[1][4] __attribute__((aligned(16)));
    const int64_t kb = neon_f32_tails(&x, 1, k, tail);
    NF_DECL(0);
    for (int64_t i = 0; i < kb; i += 4) {
        NF_LOADW(i);
        NF_FMA(0, x + i);
    }
    if (kb < k) {
        NF_LOADW(kb);
        NF_FMA(0, tail[0]);
    }
    NF_OUT(0);
}

static void f32_dot4x2(const float *const *wf, const float *x0, const float *x1, int64_t k, float *o) {
    const float *xs[2] = {x0, x1};
    float tail[2][4] __attribute__((aligned(16)));
    const int64_t kb = neon_f32_tails(xs, 2, k, tail);
    NF_DECL(0);
    NF_DECL(1);
    for (int64_t i = 0; i < kb; i += 4) {
        NF_LOADW(i);
        NF_FMA(0, x0 + i);
        NF_FMA(1, x1 + i);
    }
    if (kb < k) {
        NF_LOADW(kb);
        NF_FMA(0, tail[0]);
        NF_FMA(1, tail[1]);
    }
    NF_OUT(0);
    NF_OUT(1);
}

__attribute__((noinline)) static void f32_dot4x4(const float *const *wf, const float *const *x,
                                                 int64_t k, float *o) {
    const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    float tail[4][4] __attribute__((aligned(16)));
    const int64_t kb = neon_f32_tails(x, 4, k, tail);
    NF_DECL(0);
    NF_DECL(1);
    NF_DECL(2);
    NF_DECL(3);
    for (int64_t i = 0; i < kb; i += 4) {
        NF_LOADW(i);
        NF_FMA(0, x0 + i);
        NF_FMA(1, x1 + i);
        NF_FMA(2, x2 + i);
        NF_FMA(3, x3 + i);
    }
    if (kb < k) {
        NF_LOADW(kb);
        NF_FMA(0, tail[0]);
        NF_FMA(1, tail[1]);
        NF_FMA(2, tail[2]);
        NF_FMA(3, tail[3]);
    }
    NF_OUT(0);
    NF_OUT(1);
    NF_OUT(2);
    NF_OUT(3);
}

#endif
