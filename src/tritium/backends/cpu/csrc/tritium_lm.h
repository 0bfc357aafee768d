/* tritium_lm.h: the language-model decode kernels: the int8 linear of a quantized output head
 * (int8 weights with one absmax scale per row, int8 activations per token, exact int32
 * accumulation) and the BitLinear entry with its parameter-free RMSNorm fused.
 * A section of tritium_kernels.c, included by it at this point (build.py renders it inline
 * into one translation unit); not a standalone header.
 *
 * The int8 weight layout ("panels of 16"): n rows padded with zero rows to whole panels of 16,
 * k padded with zeros to a multiple of 4; panel p holds, for each group g of 4 k values,
 * 64 bytes: channel c (0..15) at bytes 4c..4c+3 = w[16p + c][4g .. 4g+3]. One 64-byte group is
 * one zmm of 16 channels x 4 codes (vpdpbusd), two ymm of 8 channels (AVX2), four NEON
 * vectors of 4 channels (sdot); the accumulator lanes are output channels, so a GEMV never
 * reduces horizontally.
 *
 * AVX-512 VNNI multiplies unsigned by signed bytes: the activations go in as xq + 128
 * (unsigned), and sum (xq + 128) w = sum xq w + 128 sum w, so the row sums of the weights
 * (made by tri_i8_pack) are subtracted. AVX2 uses the sign trick (|xq| times w with xq's sign,
 * pairs of products at most 2 * 127 * 127 < 32767: maddubs never saturates). NEON multiplies
 * signed bytes directly (sdot, or smull + pairwise adds without the dot product). */

#define TRI_I8_PANEL 16

static inline int64_t i8_kpad(int64_t k) { return (k + 3) & ~(int64_t)3; }

TRI_EXPORT int64_t tri_i8_bytes(int64_t n, int64_t k) {
    if (n <= 0 || k <= 0) return 0;
    return (n + TRI_I8_PANEL - 1) / TRI_I8_PANEL * TRI_I8_PANEL * i8_kpad(k);
}

TRI_EXPORT int tri_i8_pack(const int8_t *w, int64_t n, int64_t k, int8_t *out, int32_t *wsum) {
    const int64_t kp = i8_kpad(k);
    memset(out, 0, (size_t)tri_i8_bytes(n, k));
    for (int64_t r = 0; r < n; r++) {
        int8_t *dst = out + (r / TRI_I8_PANEL) * TRI_I8_PANEL * kp + (r % TRI_I8_PANEL) * 4;
        int32_t s = 0;
        for (int64_t i = 0; i < k; i++) {
            dst[(i >> 2) * 64 + (i & 3)] = w[r * k + i];
            s += w[r * k + i];
        }
        if (wsum) wsum[r] = s;
    }
    return 0;
}

/* The micro-kernels: out[t][j] (ldo apart) = sum over kp of x[t] * panel columns, for MR tokens
 * (rows of x, ldx apart) and NP panels (pstride bytes apart), ng = kp / 4 groups. Inlined with
 * constant MR/NP so that the accumulators live in registers. */
#if TRI_ISA_AVX512
#define I8_MR 4
#define I8_NP 4
#define I8_XOFF 128 /* activations stored as xq + 128 (unsigned) */
static inline __attribute__((always_inline)) void i8_mk(const uint8_t *x, int64_t ldx,
        const int8_t *w, int64_t pstride, int64_t ng, int32_t *out, int64_t ldo, const int MR,
        const int NP) {
    __m512i acc[I8_MR][I8_NP];
    for (int t = 0; t < MR; t++)
        for (int p = 0; p < NP; p++) acc[t][p] = _mm512_setzero_si512();
    for (int64_t g = 0; g < ng; g++) {
        __m512i wv[I8_NP];
        for (int p = 0; p < NP; p++) wv[p] = _mm512_loadu_si512((const void *)(w + p * pstride + g * 64));
        for (int t = 0; t < MR; t++) {
            int32_t x4;
            memcpy(&x4, x + t * ldx + g * 4, 4);
            const __m512i xb = _mm512_set1_epi32(x4);
            for (int p = 0; p < NP; p++) acc[t][p] = _mm512_dpbusd_epi32(acc[t][p], xb, wv[p]);
        }
    }
    for (int t = 0; t < MR; t++)
        for (int p = 0; p < NP; p++) _mm512_storeu_si512((void *)(out + t * ldo + p * 16), acc[t][p]);
}
#elif TRI_ISA_AVX2
#define I8_MR 2
#define I8_NP 2
#define I8_XOFF 0
static inline __attribute__((always_inline)) void i8_mk(const uint8_t *x, int64_t ldx,
        const int8_t *w, int64_t pstride, int64_t ng, int32_t *out, int64_t ldo, const int MR,
        const int NP) {
    __m256i acc[I8_MR][2 * I8_NP];
    const __m256i ones = _mm256_set1_epi16(1);
    for (int t = 0; t < MR; t++)
        for (int p = 0; p < 2 * NP; p++) acc[t][p] = _mm256_setzero_si256();
    for (int64_t g = 0; g < ng; g++) {
        __m256i wv[2 * I8_NP];
        for (int p = 0; p < NP; p++) {
            wv[2 * p] = _mm256_loadu_si256((const __m256i *)(w + p * pstride + g * 64));
            wv[2 * p + 1] = _mm256_loadu_si256((const __m256i *)(w + p * pstride + g * 64 + 32));
        }
        for (int t = 0; t < MR; t++) {
            int32_t x4;
            memcpy(&x4, x + t * ldx + g * 4, 4);
            const __m256i xb = _mm256_set1_epi32(x4);
            const __m256i ax = _mm256_abs_epi8(xb);
            for (int p = 0; p < 2 * NP; p++) {
                const __m256i prod = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv[p], xb));
                acc[t][p] = _mm256_add_epi32(acc[t][p], _mm256_madd_epi16(prod, ones));
            }
        }
    }
    for (int t = 0; t < MR; t++)
        for (int p = 0; p < 2 * NP; p++) _mm256_storeu_si256((__m256i *)(out + t * ldo + p * 8), acc[t][p]);
}
#elif TRI_ISA_NEON
#define I8_MR 2
#define I8_NP 2
#define I8_XOFF 0
static inline __attribute__((always_inline)) void i8_mk(const uint8_t *x, int64_t ldx,
        const int8_t *w, int64_t pstride, int64_t ng, int32_t *out, int64_t ldo, const int MR,
        const int NP) {
    int32x4_t acc[I8_MR][4 * I8_NP];
    for (int t = 0; t < MR; t++)
        for (int p = 0; p < 4 * NP; p++) acc[t][p] = vdupq_n_s32(0);
    for (int64_t g = 0; g < ng; g++) {
        int8x16_t wv[4 * I8_NP];
        for (int p = 0; p < NP; p++)
            for (int q = 0; q < 4; q++) wv[4 * p + q] = vld1q_s8(w + p * pstride + g * 64 + q * 16);
        for (int t = 0; t < MR; t++) {
            int32_t x4;
            memcpy(&x4, x + t * ldx + g * 4, 4);
            const int8x16_t xb = vreinterpretq_s8_s32(vdupq_n_s32(x4));
            for (int p = 0; p < 4 * NP; p++) {
#if defined(__ARM_FEATURE_DOTPROD)
                acc[t][p] = vdotq_s32(acc[t][p], wv[p], xb);
#else
                /* 4 channels x 4 products: int16 products, pairs summed twice */
                const int16x8_t lo = vmull_s8(vget_low_s8(wv[p]), vget_low_s8(xb));
                const int16x8_t hi = vmull_s8(vget_high_s8(wv[p]), vget_high_s8(xb));
                acc[t][p] = vaddq_s32(acc[t][p], vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)));
#endif
            }
        }
    }
    for (int t = 0; t < MR; t++)
        for (int p = 0; p < 4 * NP; p++) vst1q_s32(out + t * ldo + p * 4, acc[t][p]);
}
#else
#define I8_MR 2
#define I8_NP 1
#define I8_XOFF 0
static inline __attribute__((always_inline)) void i8_mk(const uint8_t *x, int64_t ldx,
        const int8_t *w, int64_t pstride, int64_t ng, int32_t *out, int64_t ldo, const int MR,
        const int NP) {
    for (int t = 0; t < MR; t++)
        for (int p = 0; p < NP; p++) {
            int32_t acc[16] = {0};
            const int8_t *xs = (const int8_t *)(x + t * ldx);
            const int8_t *wp = w + p * pstride;
            for (int64_t g = 0; g < ng; g++)
                for (int c = 0; c < 16; c++)
                    for (int j = 0; j < 4; j++) acc[c] += (int32_t)xs[g * 4 + j] * wp[g * 64 + c * 4 + j];
            for (int c = 0; c < 16; c++) out[t * ldo + p * 16 + c] = acc[c];
        }
}
#endif

typedef struct {
    const uint8_t *x;      /* m rows of kp (+ offset) activation bytes, ldx apart */
    int64_t m, n, kp, ldx, npanel, ntchunk;
    const int8_t *w;       /* the panels */
    const int32_t *wsum;   /* row sums (the +128 correction; may be NULL when I8_XOFF is 0) */
    const float *sx;       /* per-token scales (NULL: raw int32 output to yi) */
    const float *ws;       /* per-row scales */
    const float *bias;     /* may be NULL */
    float *y;
    int32_t *yi;
} I8Job;

#define I8_TCHUNK 64 /* tokens per task */

static void i8_task(void *ctx, int64_t task, int tid) {
    (void)tid;
    const I8Job *J = ctx;
    const int64_t pg = task / J->ntchunk, tc = task % J->ntchunk;
    const int64_t p0 = pg * I8_NP, np = min64(I8_NP, J->npanel - p0);
    const int64_t t0 = tc * I8_TCHUNK, t1 = min64(J->m, t0 + I8_TCHUNK);
    const int64_t pstride = TRI_I8_PANEL * J->kp, ng = J->kp / 4;
    const int8_t *w = J->w + p0 * pstride;
    int32_t acc[I8_MR * I8_NP * TRI_I8_PANEL];
    const int64_t ldo = I8_NP * TRI_I8_PANEL;
    for (int64_t t = t0; t < t1; t += I8_MR) {
        const int64_t mr = min64(I8_MR, t1 - t);
        const uint8_t *x = J->x + t * J->ldx;
        /* constant (MR, NP) instances; the tails take the one-token / one-panel kernels */
        if (mr == I8_MR && np == I8_NP) {
            i8_mk(x, J->ldx, w, pstride, ng, acc, ldo, I8_MR, I8_NP);
        } else if (np == I8_NP) {
            for (int64_t u = 0; u < mr; u++) i8_mk(x + u * J->ldx, J->ldx, w, pstride, ng, acc + u * ldo, ldo, 1, I8_NP);
        } else {
            for (int64_t u = 0; u < mr; u++)
                for (int64_t p = 0; p < np; p++)
                    i8_mk(x + u * J->ldx, J->ldx, w + p * pstride, pstride, ng, acc + u * ldo + p * TRI_I8_PANEL, ldo, 1, 1);
        }
        const int64_t c0 = p0 * TRI_I8_PANEL, c1 = min64(J->n, (p0 + np) * TRI_I8_PANEL);
        for (int64_t u = 0; u < mr; u++) {
            const int32_t *a = acc + u * ldo;
            if (J->sx == NULL) {
                int32_t *yi = J->yi + (t + u) * J->n;
                for (int64_t c = c0; c < c1; c++) yi[c] = a[c - c0] - I8_XOFF * J->wsum[c];
                continue;
            }
            const float s = J->sx[t + u];
            float *y = J->y + (t + u) * J->n;
            for (int64_t c = c0; c < c1; c++) {
                float v = (float)(a[c - c0] - I8_XOFF * J->wsum[c]) * s * J->ws[c];
                if (J->bias) v += J->bias[c];
                y[c] = v;
            }
        }
    }
}

/* xq: m rows of k int8 (or NULL: quantize x per token, as tri_quantize_rows); runs the job. */
static int i8_run(const float *x, const int8_t *xq, int64_t m, int64_t k, const int8_t *wp,
                  int64_t n, const float *ws, const int32_t *wsum, const float *bias, float *y,
                  int32_t *yi, int nthreads) {
    if (m <= 0 || n <= 0) return 0;
    const int64_t kp = i8_kpad(k), ldx = kp + 64;
    uint8_t *xb = tri_alloc((size_t)(m * ldx));
    float *sx = xq ? NULL : tri_alloc((size_t)m * sizeof(float));
    if (!xb || (!xq && !sx)) {
        free(xb); free(sx);
        return 1;
    }
    if (xq) {
        for (int64_t t = 0; t < m; t++) {
            memcpy(xb + t * ldx, xq + t * k, (size_t)k);
            memset(xb + t * ldx + k, 0, (size_t)(ldx - k));
        }
    } else {
        quantize_all(x, m, k, (int8_t *)xb, ldx, sx, NULL, nthreads);
    }
    if (I8_XOFF)
        for (int64_t i = 0; i < m * ldx; i++) xb[i] ^= 0x80; /* xq + 128 as an unsigned byte */
    I8Job J = {xb, m, n, kp, ldx, (n + TRI_I8_PANEL - 1) / TRI_I8_PANEL, (m + I8_TCHUNK - 1) / I8_TCHUNK,
               wp, wsum, sx, ws, bias, y, yi};
    const int64_t groups = (J.npanel + I8_NP - 1) / I8_NP;
    pool_run(i8_task, &J, groups * J.ntchunk, team_for_work((double)m * (double)n * (double)kp, nthreads));
    free(xb); free(sx);
    return 0;
}

TRI_EXPORT int tri_i8_linear(const float *x, int64_t m, int64_t k, const int8_t *wp, int64_t n,
                             const float *wscale, const int32_t *wsum, const float *bias,
                             float *y, int nthreads) {
    return i8_run(x, NULL, m, k, wp, n, wscale, wsum, bias, y, NULL, nthreads);
}

TRI_EXPORT int tri_i8_gemm(const int8_t *xq, int64_t m, int64_t k, const int8_t *wp, int64_t n,
                           const int32_t *wsum, int32_t *y, int nthreads) {
    return i8_run(NULL, xq, m, k, wp, n, NULL, wsum, NULL, NULL, y, nthreads);
}

/* RMSNorm (no weight) of each row: in double precision the mean of squares, then
 * y = x / sqrt(mean + eps) in float. */
static void rms_rows(const float *x, int64_t m, int64_t k, float eps, float *xn) {
    for (int64_t t = 0; t < m; t++) {
        const float *r = x + t * k;
        float *o = xn + t * k;
        double ss = 0.0;
        for (int64_t i = 0; i < k; i++) ss += (double)r[i] * (double)r[i];
        const float inv = (float)(1.0 / sqrt(ss / (double)k + (double)eps));
        for (int64_t i = 0; i < k; i++) o[i] = r[i] * inv;
    }
}

/* tri_linear_planned on rms_rows(x): a frozen BitLinear in one call. */
TRI_EXPORT int tri_rms_linear_planned(const TriLinearPlan *p, const float *x, int64_t m,
                                      float eps, int act, float *y, int nthreads,
                                      const uint8_t *gw) {
    float *xn = tri_alloc((size_t)(m * p->k) * sizeof(float));
    if (!xn) return 1;
    rms_rows(x, m, p->k, eps, xn);
    int rc = tri_linear_planned(p, xn, m, NULL, act, y, nthreads, gw);
    free(xn);
    return rc;
}

/* Several frozen int8 layers of one input (the same k and format): rms_rows and the int8
 * quantization once, then each layer's product, dispatched as tri_linear dispatches it (so
 * each ys[i] holds exactly what tri_rms_linear_planned(plans[i], ...) gives). Returns 0, 1 on
 * allocation failure, 2 when the layers do not share k, format and int8 activations. */
TRI_EXPORT int tri_rms_multi_planned(const TriLinearPlan *const *plans, int64_t count,
                                     const float *x, int64_t m, float eps, float *const *ys,
                                     int nthreads) {
    if (count <= 0 || m <= 0) return 0;
    const int64_t k = plans[0]->k;
    const int fmt = plans[0]->fmt;
    for (int64_t i = 0; i < count; i++)
        if (plans[i]->k != k || plans[i]->fmt != fmt || !plans[i]->act_quant) return 2;
    const int64_t nb = n_blocks(fmt, k), kpad = nb * blk_elems(fmt), ldx = kpad + 64;
    float *xn = tri_alloc((size_t)(m * k) * sizeof(float));
    int8_t *xq = tri_alloc((size_t)(m * ldx));
    float *sx = tri_alloc((size_t)m * sizeof(float));
    int32_t *sumx = tri_alloc((size_t)m * sizeof(int32_t));
    int err = 1;
    if (xn && xq && sx && sumx) {
        rms_rows(x, m, k, eps, xn);
        quantize_all(xn, m, k, xq, ldx, sx, sumx, nthreads);
        err = 0;
        for (int64_t i = 0; i < count && !err; i++) {
            const TriLinearPlan *p = plans[i];
            Problem P;
            memset(&P, 0, sizeof P);
            P.m = m; P.k = k; P.n = p->n; P.row_bytes = p->row_bytes; P.fmt = fmt; P.w = p->w;
            P.y = ys[i]; P.nb = nb; P.kpad = kpad; P.ldx = ldx;
            P.epi.scale = p->scale; P.epi.nscale = p->nscale; P.epi.bias = p->bias;
            P.epi.act = TRI_ACT_NONE;
            P.xq = xq; P.sx = sx; P.sumx = sumx;
            if (p->n == 0) continue;
            err = TRI_HAVE_G2 && m >= TRI_GEMM_MIN_M ? run_g2(&P, NULL, nthreads) : run_problem(&P, nthreads);
        }
    }
    free(xn); free(xq); free(sx); free(sumx);
    return err;
}

/* ------------------------------------------------------------------------------------ */
/* One decoder block of a BitNet-style language model for one token, in one call           */
/* ------------------------------------------------------------------------------------ */

/* tri_lm_block_decode runs, for the one new token x [dim] at position pos:
 *   h = rms(x) * w_in;  q, k, v = the int8 products of h (quantized once);  rope on q and k
 *   (the "rotate half" form, with the row cos/sin of the position);  k, v written to the cache
 *   at pos (kv head j into the cache heads j*c .. j*c+c-1, c = cache_heads / kv_heads: 1 keeps
 *   each k/v head once, heads / kv_heads is the layout of a generated model that repeats its
 *   k/v heads before attention; float32 or float16 elements);  a = softmax(q k^T /
 *   sqrt(head_dim)) v over positions 0 .. pos of the cache, per head (query head h reads
 *   its k/v head's first copy);
 *   x += o(rms(a) * w_attn);  m = rms(x) * w_post;  t = relu(gate(m))^2 * up(m);
 *   x += down(rms(t) * w_ffn)
 * where rms(v) = v / sqrt(mean(v^2) + eps) (the mean in float) and every product is a frozen
 * layer's plan with int8 activations per token run through run_problem, as tri_linear runs a
 * one-token call (the same quantizer, the same kernels). The rope, the residual adds and the
 * ReLU^2 gating round each operation as PyTorch's elementwise ops do (no contraction into
 * FMA), so only the norms' and the attention's summation order differ from the eager path. */
typedef struct {
    int64_t dim, heads, kv_heads, head_dim, ffn;
    float eps_in, eps_attn, eps_post, eps_ffn;
    const float *w_in, *w_attn, *w_post, *w_ffn; /* RMSNorm weights; NULL: none */
    const TriLinearPlan *q, *k, *v, *o, *gate, *up, *down;
    /* heads of the KV cache: kv_heads (each k/v head stored once) or a multiple of it that
     * divides heads (heads: each k/v head repeated for every query head of its group, the
     * layout of a generated model that repeats its k/v heads before attention); 0: heads */
    int64_t cache_heads;
    /* the cache's element type: 0 float32, 1 float16 (IEEE binary16, rounded to nearest even
     * when written, as torch's .half()) */
    int64_t cache_half;
} TriLmBlock;

/* float16 <-> float32 of a row: F16C on x86 (every AVX2 CPU has it; enabled per function),
 * the fp16 conversions of AArch64 on NEON, bit operations in portable C */
#if TRI_ISA_AVX2 || TRI_ISA_AVX512
__attribute__((target("f16c"))) static void lmb_to_half(const float *x, uint16_t *h, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) h[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static void lmb_from_half(const uint16_t *h, float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) x[i] = _cvtsh_ss(h[i]);
}
#elif TRI_ISA_NEON
static void lmb_to_half(const float *x, uint16_t *h, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(h + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) {
        const __fp16 v = (__fp16)x[i];
        memcpy(h + i, &v, 2);
    }
}
static void lmb_from_half(const uint16_t *h, float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + i))));
    for (; i < n; i++) {
        __fp16 v;
        memcpy(&v, h + i, 2);
        x[i] = (float)v;
    }
}
#else
static uint16_t lmb_half_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) /* inf, NaN (quiet, payload kept in the high bits) */
        return (uint16_t)(sign | 0x7C00u | (a > 0x7F800000u ? 0x200u | ((a >> 13) & 0x3FFu) : 0u));
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* rounds past 65504: inf */
    if (a < 0x38800000u) { /* a subnormal half (or zero): round a * 2^24 to an integer */
        if (a < 0x33000000u) return (uint16_t)sign; /* below half the smallest: 0 */
        const uint32_t e = a >> 23, mant = (a & 0x7FFFFFu) | 0x800000u;
        const uint32_t shift = 126u - e; /* 14 .. 24 */
        uint32_t r = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    /* normal: rebias the exponent, round the 13 dropped bits to nearest even */
    uint32_t r = ((a >> 13) - ((127u - 15u) << 10));
    const uint32_t rem = a & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}
static float lmb_float_of(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    uint32_t u;
    if (e == 0x1Fu) {
        u = sign | 0x7F800000u | (mant << 13);
    } else if (e) {
        u = sign | ((e + 112u) << 23) | (mant << 13);
    } else if (mant) { /* subnormal: normalize */
        uint32_t m = mant, ex = 113u;
        while (!(m & 0x400u)) { m <<= 1; ex--; }
        u = sign | (ex << 23) | ((m & 0x3FFu) << 13);
    } else {
        u = sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static void lmb_to_half(const float *x, uint16_t *h, int64_t n) {
    for (int64_t i = 0; i < n; i++) h[i] = lmb_half_of(x[i]);
}
static void lmb_from_half(const uint16_t *h, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = lmb_float_of(h[i]);
}
#endif

/* row p of cache head ch (cap positions of hd values) */
static inline const float *lmb_row(const void *c, int half, int64_t ch, int64_t cap, int64_t p,
                                   int64_t hd, float *tmp) {
    if (!half) return (const float *)c + (ch * cap + p) * hd;
    lmb_from_half((const uint16_t *)c + (ch * cap + p) * hd, tmp, hd);
    return tmp;
}

/* copies of each k/v head in the cache of b (0 when cache_heads does not fit) */
static inline int64_t lmb_crep(const TriLmBlock *b) {
    const int64_t C = b->cache_heads ? b->cache_heads : b->heads;
    if (C <= 0 || C % b->kv_heads || b->heads % C) return 0;
    return C / b->kv_heads;
}

#if defined(__GNUC__) && !defined(__clang__)
#define LMB_EXACT __attribute__((optimize("fp-contract=off")))
#else
#define LMB_EXACT /* clang contracts only within one expression (-ffp-contract=on) */
#endif

static inline int64_t lmb_ldx(const TriLinearPlan *p) {
    return n_blocks(p->fmt, p->k) * blk_elems(p->fmt) + 64;
}

/* the workspace: float regions, then the int8 activations (the widest layer's row) */
typedef struct {
    float *xn, *q, *k, *v, *att, *g, *u, *y, *scores, *sx;
    int32_t *sumx;
    int8_t *xq;
    int64_t bytes;
} LmbSpace;

static LmbSpace lmb_space(const TriLmBlock *b, int64_t cap, uint8_t *base) {
    const int64_t qd = b->heads * b->head_dim, kvd = b->kv_heads * b->head_dim;
    int64_t wide = b->dim > qd ? b->dim : qd;
    if (b->ffn > wide) wide = b->ffn;
    int64_t ldx = lmb_ldx(b->q);
    const TriLinearPlan *ps[6] = {b->o, b->gate, b->up, b->down, b->k, b->v};
    for (int i = 0; i < 6; i++) if (lmb_ldx(ps[i]) > ldx) ldx = lmb_ldx(ps[i]);
    const int64_t sizes[10] = {wide, qd, kvd, kvd, qd, b->ffn, b->ffn, wide,
                               b->heads * (cap + b->head_dim), 16};
    LmbSpace s;
    float **dst[10] = {&s.xn, &s.q, &s.k, &s.v, &s.att, &s.g, &s.u, &s.y, &s.scores, &s.sx};
    int64_t off = 0;
    for (int i = 0; i < 10; i++) {
        *dst[i] = base ? (float *)(base + off) : NULL;
        off += (sizes[i] * (int64_t)sizeof(float) + 63) & ~(int64_t)63;
    }
    s.sumx = base ? (int32_t *)(base + off) : NULL;
    off += 64;
    s.xq = base ? (int8_t *)(base + off) : NULL;
    off += (ldx + 63) & ~(int64_t)63;
    s.bytes = off;
    return s;
}

/* bytes of the workspace tri_lm_block_decode needs for a cache of `cap` positions */
TRI_EXPORT int64_t tri_lm_block_workspace(const TriLmBlock *b, int64_t cap) {
    return lmb_space(b, cap, NULL).bytes;
}

/* y = v / sqrt(mean(v^2) + eps) * w, rounded as torch's rms_norm: (v * inv) * w */
static LMB_EXACT void lmb_rms(const float *v, int64_t n, float eps, const float *w, float *y) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += v[i + j] * v[i + j];
    float ss = 0.0f;
    for (; i < n; i++) ss += v[i] * v[i];
    for (int j = 0; j < 8; j++) ss += acc[j];
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    if (w)
        for (i = 0; i < n; i++) y[i] = (v[i] * inv) * w[i];
    else
        for (i = 0; i < n; i++) y[i] = v[i] * inv;
}

/* The int8 products of an already quantized row (xq, sx, sumx) with `count` (at most 3) frozen
 * layers of its width: ys[i] [n_i], as tri_linear computes a one-token call, but in one
 * parallel region (the team sized by their work together: q/k/v or gate/up of a small model
 * each fall below the size that pays for a second thread, together they may not). */
typedef struct {
    ProblemJob *jobs[3];
    int64_t start[4];
    int count;
} LmbMulti;

static void lmb_multi_task(void *ctx, int64_t task, int tid) {
    const LmbMulti *M = ctx;
    int i = 0;
    while (i + 1 < M->count && task >= M->start[i + 1]) i++;
    problem_task(M->jobs[i], task - M->start[i], tid);
}

static int lmb_linears(const TriLinearPlan *const *ps, float *const *ys, int count,
                       const LmbSpace *s, int nthreads) {
    if (nthreads > TRI_MAX_THREADS) nthreads = TRI_MAX_THREADS;
    if (nthreads < 1) nthreads = 1;
    Problem P[3];
    LmbMulti M;
    memset(&M, 0, sizeof M);
    double work = 0.0;
    int64_t total = 0;
    for (int i = 0; i < count; i++) {
        const TriLinearPlan *p = ps[i];
        memset(&P[i], 0, sizeof P[i]);
        P[i].m = 1; P[i].k = p->k; P[i].n = p->n; P[i].row_bytes = p->row_bytes;
        P[i].fmt = p->fmt; P[i].w = p->w; P[i].y = ys[i];
        P[i].nb = n_blocks(p->fmt, p->k); P[i].kpad = P[i].nb * blk_elems(p->fmt);
        P[i].ldx = P[i].kpad + 64;
        P[i].epi.scale = p->scale; P[i].epi.nscale = p->nscale; P[i].epi.bias = p->bias;
        P[i].epi.act = TRI_ACT_NONE;
        P[i].xq = s->xq; P[i].sx = s->sx; P[i].sumx = s->sumx;
        int64_t nt;
        double w;
        M.jobs[i] = problem_job_new(&P[i], nthreads, &nt, &w);
        if (!M.jobs[i]) {
            for (int j = 0; j < i; j++) problem_job_free(M.jobs[j]);
            return 1;
        }
        M.start[i] = total;
        total += nt;
        work += w;
    }
    M.count = count;
    M.start[count] = total;
    pool_run(lmb_multi_task, &M, total, team_for_work(work, nthreads));
    int err = 0;
    for (int i = 0; i < count; i++) err |= problem_job_free(M.jobs[i]);
    return err;
}

static int lmb_linear(const TriLinearPlan *p, const LmbSpace *s, float *y, int nthreads) {
    return lmb_linears(&p, &y, 1, s, nthreads);
}

static void lmb_quantize(const float *v, const TriLinearPlan *p, const LmbSpace *s) {
    quantize_row(v, p->k, s->xq, lmb_ldx(p), s->sx, s->sumx);
}

static LMB_EXACT void lmb_rope(float *v, int64_t nheads, int64_t hd, const float *c,
                               const float *sn) {
    const int64_t half = hd / 2;
    for (int64_t h = 0; h < nheads; h++) {
        float *a = v + h * hd, *b = a + half;
        for (int64_t i = 0; i < half; i++) {
            const float x1 = a[i], x2 = b[i];
            const float p1 = x1 * c[i], p2 = x2 * sn[i], p3 = x2 * c[i], p4 = x1 * sn[i];
            a[i] = p1 - p2;
            b[i] = p3 + p4;
        }
    }
}

static LMB_EXACT void lmb_add(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] + y[i];
}

static inline float lmb_dot(const float *a, const float *b, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0.0f;
    for (; i < n; i++) s += a[i] * b[i];
    for (int j = 0; j < 8; j++) s += acc[j];
    return s;
}

typedef struct {
    const float *q;
    const void *kc, *vc;
    int64_t cap, n, hd, rep, crep, half;
    float scale;
    float *scores, *out;
} LmbAttJob;

/* softmax(q k^T * scale) v over positions 0 .. n-1 of cache head ch; s: n + hd floats of
 * scratch */
static void lmb_att_row(const float *q, const void *kc, const void *vc, int half, int64_t ch,
                        int64_t cap, int64_t n, int64_t hd, float scale, float *s, float *o) {
    float mx = -INFINITY;
    float *tmp = s + n;
    for (int64_t p = 0; p < n; p++) {
        s[p] = lmb_dot(q, lmb_row(kc, half, ch, cap, p, hd, tmp), hd) * scale;
        if (s[p] > mx) mx = s[p];
    }
    float sum = 0.0f;
    for (int64_t p = 0; p < n; p++) {
        s[p] = expf(s[p] - mx);
        sum += s[p];
    }
    const float inv = 1.0f / sum;
    for (int64_t d = 0; d < hd; d++) o[d] = 0.0f;
    for (int64_t p = 0; p < n; p++) {
        const float w = s[p] * inv;
        const float *vr = lmb_row(vc, half, ch, cap, p, hd, tmp);
        for (int64_t d = 0; d < hd; d++) o[d] += w * vr[d];
    }
}

/* one head of the one-token decode */
static void lmb_att_task(void *ctx, int64_t h, int tid) {
    (void)tid;
    const LmbAttJob *J = ctx;
    const int64_t hd = J->hd;
    /* query head h reads its k/v head's (first) copy in the cache */
    const int64_t ch = h / J->rep * J->crep;
    lmb_att_row(J->q + h * hd, J->kc, J->vc, (int)J->half, ch, J->cap, J->n, hd, J->scale,
                J->scores + h * (J->cap + hd), J->out + h * hd);
}

/* the keys and values of m tokens (rows of KV heads) into the cache at pos .. pos+m-1, each
 * k/v head j into cache heads j*crep .. j*crep+crep-1 */
static void lmb_cache_write(const float *k, const float *v, int64_t m, int64_t KV, int64_t hd,
                            int64_t crep, int half, void *kc, void *vc, int64_t cap,
                            int64_t pos) {
    const size_t row = (size_t)hd * sizeof(float);
    for (int64_t t = 0; t < m; t++)
        for (int64_t j = 0; j < KV; j++)
            for (int64_t r = 0; r < crep; r++) {
                const int64_t at = ((j * crep + r) * cap + pos + t) * hd;
                const float *ks = k + (t * KV + j) * hd, *vs = v + (t * KV + j) * hd;
                if (half) {
                    lmb_to_half(ks, (uint16_t *)kc + at, hd);
                    lmb_to_half(vs, (uint16_t *)vc + at, hd);
                } else {
                    memcpy((float *)kc + at, ks, row);
                    memcpy((float *)vc + at, vs, row);
                }
            }
}

static LMB_EXACT void lmb_relu2_gate(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float r = g[i] < 0.0f ? 0.0f : g[i]; /* NaN passes, as torch.relu */
        const float sq = r * r;
        g[i] = sq * u[i];
    }
}

/* Returns 0, 2 when the block's shapes do not fit together (or pos is outside the cache),
 * 1 when a kernel could not allocate its buffers. x [dim] is the block's output (xin its
 * input; they may be the same buffer: then it is updated in place); kc/vc are the
 * cache's [cache_heads, cap, head_dim] keys and values (float32, or float16 when
 * b->cache_half); cos/sin the position's head_dim/2 angles;
 * ws a workspace of tri_lm_block_workspace(b, cap) bytes, 64-byte aligned. */
TRI_EXPORT int tri_lm_block_decode(const TriLmBlock *b, const float *xin, float *x,
                                   const float *cosr, const float *sinr, void *kc, void *vc,
                                   int64_t cap, int64_t pos, uint8_t *ws, int nthreads) {
    const int64_t H = b->heads, KV = b->kv_heads, hd = b->head_dim, D = b->dim, F = b->ffn;
    if (H <= 0 || KV <= 0 || H % KV || hd <= 0 || hd % 2 || pos < 0 || pos >= cap) return 2;
    const int64_t qd = H * hd, kvd = KV * hd, rep = H / KV, crep = lmb_crep(b);
    if (!crep) return 2;
    const TriLinearPlan *ps[7] = {b->q, b->k, b->v, b->o, b->gate, b->up, b->down};
    const int64_t ks[7] = {D, D, D, qd, D, D, F}, ns[7] = {qd, kvd, kvd, D, F, F, D};
    for (int i = 0; i < 7; i++)
        if (ps[i]->k != ks[i] || ps[i]->n != ns[i] || !ps[i]->act_quant) return 2;
    /* q/k/v and gate/up read one quantized row: one packed format (the same padding) */
    if (b->k->fmt != b->q->fmt || b->v->fmt != b->q->fmt || b->up->fmt != b->gate->fmt) return 2;
    const LmbSpace s = lmb_space(b, cap, ws);
    int rc = 0;
    if (x != xin) memcpy(x, xin, (size_t)D * sizeof(float));
    /* attention */
    lmb_rms(x, D, b->eps_in, b->w_in, s.xn);
    lmb_quantize(s.xn, b->q, &s);
    {
        const TriLinearPlan *qkv[3] = {b->q, b->k, b->v};
        float *const out[3] = {s.q, s.k, s.v};
        if ((rc = lmb_linears(qkv, out, 3, &s, nthreads))) return rc;
    }
    lmb_rope(s.q, H, hd, cosr, sinr);
    lmb_rope(s.k, KV, hd, cosr, sinr);
    const int half = b->cache_half != 0;
    lmb_cache_write(s.k, s.v, 1, KV, hd, crep, half, kc, vc, cap, pos);
    LmbAttJob A = {s.q, kc, vc, cap, pos + 1, hd, rep, crep, half, 1.0f / sqrtf((float)hd),
                   s.scores, s.att};
    pool_run(lmb_att_task, &A, H,
             team_for_work((double)H * (double)(pos + 1) * (double)hd * 2.0, nthreads));
    lmb_rms(s.att, qd, b->eps_attn, b->w_attn, s.xn);
    lmb_quantize(s.xn, b->o, &s);
    if ((rc = lmb_linear(b->o, &s, s.y, nthreads))) return rc;
    lmb_add(x, s.y, D);
    /* MLP */
    lmb_rms(x, D, b->eps_post, b->w_post, s.xn);
    lmb_quantize(s.xn, b->gate, &s);
    {
        const TriLinearPlan *gu[2] = {b->gate, b->up};
        float *const out[2] = {s.g, s.u};
        if ((rc = lmb_linears(gu, out, 2, &s, nthreads))) return rc;
    }
    lmb_relu2_gate(s.g, s.u, F);
    lmb_rms(s.g, F, b->eps_ffn, b->w_ffn, s.xn);
    lmb_quantize(s.xn, b->down, &s);
    if ((rc = lmb_linear(b->down, &s, s.y, nthreads))) return rc;
    lmb_add(x, s.y, D);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* One decoder block for a chunk of tokens (a prompt), in one call                         */
/* ------------------------------------------------------------------------------------ */

/* tri_lm_block_prefill runs the block of tri_lm_block_decode on m tokens x [m, dim] at
 * positions pos .. pos+m-1: each norm per token, q/k/v (then o, gate/up, down) as one int8
 * quantization of the m rows and the layers' batch products (the G2 GEMM from TRI_GEMM_MIN_M
 * tokens, on each layer's G2 layout gws[i] when given, as tri_linear_planned runs a layer's
 * call on m tokens), rope with the m rows of cos/sin from row pos, the m keys and values
 * written to the cache at pos .. pos+m-1, causal attention (token t sees positions 0 ..
 * pos+t), the residuals and ReLU^2 gating as in the decode. */
typedef struct {
    const float *q;
    const void *kc, *vc;
    int64_t m, pos, cap, hd, H, rep, crep, nqb, half;
    float scale;
    float *scores; /* TRI_MAX_THREADS rows of pos + m + hd */
    float *out;
} LmpAttJob;

#define LMP_QB 16 /* queries of one head per attention task */

static void lmp_att_task(void *ctx, int64_t task, int tid) {
    const LmpAttJob *J = ctx;
    const int64_t h = task / J->nqb, t0 = task % J->nqb * LMP_QB, t1 = min64(J->m, t0 + LMP_QB);
    const int64_t hd = J->hd, qd = J->H * hd, ch = h / J->rep * J->crep;
    float *s = J->scores + (int64_t)tid * (J->pos + J->m + hd);
    for (int64_t t = t0; t < t1; t++)
        lmb_att_row(J->q + t * qd + h * hd, J->kc, J->vc, (int)J->half, ch, J->cap,
                    J->pos + t + 1, hd, J->scale, s, J->out + t * qd + h * hd);
}

static void lmp_rms(const float *v, int64_t m, int64_t n, float eps, const float *w, float *y) {
    for (int64_t t = 0; t < m; t++) lmb_rms(v + t * n, n, eps, w, y + t * n);
}

/* y [m, n] = the layer's product of the quantized rows (xq with p's row stride, sx, sumx) */
static int lmp_linear(const TriLinearPlan *p, const uint8_t *gw, const int8_t *xq,
                      const float *sx, const int32_t *sumx, int64_t m, float *y, int nthreads) {
    if (p->n == 0) return 0;
    Problem P;
    memset(&P, 0, sizeof P);
    P.m = m; P.k = p->k; P.n = p->n; P.row_bytes = p->row_bytes; P.fmt = p->fmt; P.w = p->w;
    P.y = y; P.nb = n_blocks(p->fmt, p->k); P.kpad = P.nb * blk_elems(p->fmt);
    P.ldx = P.kpad + 64;
    P.epi.scale = p->scale; P.epi.nscale = p->nscale; P.epi.bias = p->bias;
    P.epi.act = TRI_ACT_NONE;
    P.xq = xq; P.sx = sx; P.sumx = sumx;
    return TRI_HAVE_G2 && m >= TRI_GEMM_MIN_M ? run_g2(&P, gw, nthreads) : run_problem(&P, nthreads);
}

/* Returns 0, 2 when the block's shapes do not fit together (or pos .. pos+m-1 is outside
 * the cache), 1 when a buffer could not be allocated. x [m, dim] is the output (xin the
 * input; the same buffer updates in place); cosr/sinr: m rows of head_dim/2 angles (those
 * of positions pos ..); kc/vc the cache [cache heads, cap, head_dim]; gws: 7 pointers (q, k,
 * v, o, gate, up, down) to the layers' G2 layouts, any of them NULL, or NULL. */
TRI_EXPORT int tri_lm_block_prefill(const TriLmBlock *b, const float *xin, float *x, int64_t m,
                                    const float *cosr, const float *sinr, void *kc, void *vc,
                                    int64_t cap, int64_t pos, const uint8_t *const *gws,
                                    int nthreads) {
    const int64_t H = b->heads, KV = b->kv_heads, hd = b->head_dim, D = b->dim, F = b->ffn;
    if (H <= 0 || KV <= 0 || H % KV || hd <= 0 || hd % 2 || m <= 0 || pos < 0
        || pos + m > cap)
        return 2;
    const int64_t qd = H * hd, kvd = KV * hd, rep = H / KV, crep = lmb_crep(b), half = hd / 2;
    if (!crep) return 2;
    const TriLinearPlan *ps[7] = {b->q, b->k, b->v, b->o, b->gate, b->up, b->down};
    const int64_t ks[7] = {D, D, D, qd, D, D, F}, ns[7] = {qd, kvd, kvd, D, F, F, D};
    for (int i = 0; i < 7; i++)
        if (ps[i]->k != ks[i] || ps[i]->n != ns[i] || !ps[i]->act_quant) return 2;
    if (b->k->fmt != b->q->fmt || b->v->fmt != b->q->fmt || b->up->fmt != b->gate->fmt) return 2;
    if (nthreads > TRI_MAX_THREADS) nthreads = TRI_MAX_THREADS;
    if (nthreads < 1) nthreads = 1;
    const uint8_t *gw[7] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    if (gws)
        for (int i = 0; i < 7; i++) gw[i] = gws[i];
    int64_t wide = D > qd ? D : qd, ldx = 0;
    if (F > wide) wide = F;
    for (int i = 0; i < 7; i++) if (lmb_ldx(ps[i]) > ldx) ldx = lmb_ldx(ps[i]);
    float *xn = tri_alloc((size_t)(m * wide) * sizeof(float));
    float *q = tri_alloc((size_t)(m * qd) * sizeof(float));
    float *kk = tri_alloc((size_t)(m * kvd) * sizeof(float));
    float *vv = tri_alloc((size_t)(m * kvd) * sizeof(float));
    float *att = tri_alloc((size_t)(m * qd) * sizeof(float));
    float *g = tri_alloc((size_t)(m * F) * sizeof(float));
    float *u = tri_alloc((size_t)(m * F) * sizeof(float));
    float *y = tri_alloc((size_t)(m * D) * sizeof(float));
    float *scores = tri_alloc((size_t)(TRI_MAX_THREADS * (pos + m + hd)) * sizeof(float));
    float *sx = tri_alloc((size_t)m * sizeof(float));
    int32_t *sumx = tri_alloc((size_t)m * sizeof(int32_t));
    int8_t *xq = tri_alloc((size_t)(m * ldx));
    int rc = 1;
    if (!xn || !q || !kk || !vv || !att || !g || !u || !y || !scores || !sx || !sumx || !xq)
        goto done;
    if (x != xin) memcpy(x, xin, (size_t)(m * D) * sizeof(float));
    /* attention */
    lmp_rms(x, m, D, b->eps_in, b->w_in, xn);
    quantize_all(xn, m, D, xq, lmb_ldx(b->q), sx, sumx, nthreads);
    if ((rc = lmp_linear(b->q, gw[0], xq, sx, sumx, m, q, nthreads))) goto done;
    if ((rc = lmp_linear(b->k, gw[1], xq, sx, sumx, m, kk, nthreads))) goto done;
    if ((rc = lmp_linear(b->v, gw[2], xq, sx, sumx, m, vv, nthreads))) goto done;
    for (int64_t t = 0; t < m; t++) {
        lmb_rope(q + t * qd, H, hd, cosr + t * half, sinr + t * half);
        lmb_rope(kk + t * kvd, KV, hd, cosr + t * half, sinr + t * half);
    }
    lmb_cache_write(kk, vv, m, KV, hd, crep, b->cache_half != 0, kc, vc, cap, pos);
    {
        LmpAttJob A = {q, kc, vc, m, pos, cap, hd, H, rep, crep, (m + LMP_QB - 1) / LMP_QB,
                       b->cache_half != 0, 1.0f / sqrtf((float)hd), scores, att};
        const double work = (double)H * (double)m * ((double)pos + 0.5 * (double)m)
                            * (double)hd * 2.0;
        pool_run(lmp_att_task, &A, H * A.nqb, team_for_work(work, nthreads));
    }
    lmp_rms(att, m, qd, b->eps_attn, b->w_attn, xn);
    quantize_all(xn, m, qd, xq, lmb_ldx(b->o), sx, sumx, nthreads);
    if ((rc = lmp_linear(b->o, gw[3], xq, sx, sumx, m, y, nthreads))) goto done;
    lmb_add(x, y, m * D);
    /* MLP */
    lmp_rms(x, m, D, b->eps_post, b->w_post, xn);
    quantize_all(xn, m, D, xq, lmb_ldx(b->gate), sx, sumx, nthreads);
    if ((rc = lmp_linear(b->gate, gw[4], xq, sx, sumx, m, g, nthreads))) goto done;
    if ((rc = lmp_linear(b->up, gw[5], xq, sx, sumx, m, u, nthreads))) goto done;
    lmb_relu2_gate(g, u, m * F);
    lmp_rms(g, m, F, b->eps_ffn, b->w_ffn, xn);
    quantize_all(xn, m, F, xq, lmb_ldx(b->down), sx, sumx, nthreads);
    if ((rc = lmp_linear(b->down, gw[6], xq, sx, sumx, m, y, nthreads))) goto done;
    lmb_add(x, y, m * D);
    rc = 0;
done:
    free(xn); free(q); free(kk); free(vv); free(att); free(g); free(u); free(y);
    free(scores); free(sx); free(sumx); free(xq);
    return rc;
}
