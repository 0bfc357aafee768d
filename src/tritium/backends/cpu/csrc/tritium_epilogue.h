/* tritium_epilogue.h: the int8 activation quantizer and the epilogue (scales, bias, residual, activation).
 * A section of tritium_kernels.c, included by it at this point (build.py renders it
 * inline into one translation unit); not a standalone header. */

/* ------------------------------------------------------------------------------------ */
/* Activation quantization and epilogue                                                 */
/* ------------------------------------------------------------------------------------ */

/* Division-free and still exact. The reference is round_half_even(x / s) for the float
 * quotient, and a vector division costs 5-10 cycles a register where a multiplication costs
 * half of one: the SIMD paths multiply by r = 127/amax (rounded; TRI_QUANT_RECIP) instead.
 * For |x| <= amax, the product y and the float quotient q both lie within 2.3e-5 of the real
 * quotient (|x/s| <= 127(1 + 2^-24); y carries three roundings of 2^-24 relative, q one), so
 * when y is farther
 * than TRI_QUANT_TIE from every half-integer, y and q fall in the same open interval between
 * two half-integers and round to the same integer. A register with a lane that close (a tie
 * such as x = amax / 2, or a rare near miss) is redone by division, and so is a row whose
 * scale is too small for its reciprocal to be a normal float (s < 2^-100). */
#define TRI_QUANT_TIE 6.103515625e-05f /* 2^-14 */
#define TRI_QUANT_MIN_RECIP_SCALE 7.888609052210118e-31f /* 2^-100 */
/* r = 127 / amax, computed beside sc = amax / 127 instead of after it (two dependent
 * divisions were a third of a short row's fixed cost); against the real 1/sc it carries two
 * roundings, so y carries three: |y - x/sc| <= 127 (1 + 2^-24) 3 2^-24 < 2.3e-5, and the
 * margin of 2^-14 still holds. amax = 0 (sc = 1) takes r = 1. */
#define TRI_QUANT_RECIP(amax, sc) ((amax) > 0.0f ? 127.0f / (amax) : 1.0f / (sc))

#if TRI_ISA_AVX2
/* 8 values quantized exactly as the scalar loop does: x r rounded, redone by division when a
 * lane is within TRI_QUANT_TIE of a half-integer (or always, by_div), NaN -> 0 (and noted in
 * *nan: the row's scale becomes NaN), clamped. */
static inline __m256i quant8_exact(__m256 xv, __m256 vs, __m256 vr, int by_div, __m256 *nan) {
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 v;
    if (by_div) {
        v = _mm256_round_ps(_mm256_div_ps(xv, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    } else {
        const __m256 y = _mm256_mul_ps(xv, vr);
        v = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256 d = _mm256_and_ps(_mm256_sub_ps(y, v), absm);
        if (_mm256_movemask_ps(_mm256_cmp_ps(d, _mm256_set1_ps(0.5f - TRI_QUANT_TIE), _CMP_GE_OQ)))
            v = _mm256_round_ps(_mm256_div_ps(xv, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
    const __m256 ord = _mm256_cmp_ps(v, v, _CMP_ORD_Q);
    *nan = _mm256_or_ps(*nan, _mm256_andnot_ps(ord, _mm256_castsi256_ps(_mm256_set1_epi32(-1))));
    v = _mm256_and_ps(v, ord); /* NaN -> 0 */
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f)));
}

/* 32 values through quant8_exact (out of line: the fast loop keeps its registers) */
__attribute__((noinline)) static void quant32_exact(const float *x, __m256 vs, __m256 vr, __m256i *qi,
                                                    __m256 *nan) {
    for (int j = 0; j < 4; j++) qi[j] = quant8_exact(_mm256_loadu_ps(x + 8 * j), vs, vr, 0, nan);
}
#endif

/* A row's quantization in two halves, so that two rows can be interleaved (quantize_row2):
 * row_amax, the largest |x| (NaN ignored, as the scalar compare does), then row_quant. A short
 * row is latency-bound (the maximum's reduction tree, two divisions, the sum's reduction): two
 * rows in flight hide most of it. Both halves are inlined; the arithmetic is quantize_row's. */
static inline __attribute__((always_inline)) float row_amax(const float *x, int64_t k) {
#if TRI_ISA_AVX512
    /* 16 lanes at a time; four independent maxima (one chain of vmaxps is latency-bound);
     * max(|x|, acc) keeps acc when x is NaN, as the scalar compare does */
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= k; i += 64) {
        a0 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i)), a0);
        a1 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i + 16)), a1);
        a2 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i + 32)), a2);
        a3 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i + 48)), a3);
    }
    for (; i + 16 <= k; i += 16) a0 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i)), a0);
    if (i < k) /* the tail as one masked load (masked-off lanes read as 0) */
        a1 = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps((__mmask16)((1u << (k - i)) - 1u), x + i)), a1);
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(a2, a3)));
#else
    float amax = 0.0f;
    int64_t i0 = 0;
#if TRI_ISA_AVX2
    /* 8 lanes at a time, the same arithmetic as the loop below (bit-identical), four
     * independent maxima; max(|x|, acc) keeps acc when x is NaN, as the scalar compare does */
    {
        const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (; i0 + 32 <= k; i0 += 32) {
            a0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i0), absm), a0);
            a1 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i0 + 8), absm), a1);
            a2 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i0 + 16), absm), a2);
            a3 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i0 + 24), absm), a3);
        }
        for (; i0 + 8 <= k; i0 += 8) a0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i0), absm), a0);
        /* the lanes hold no NaN (see above): a tree of vmaxps finds their maximum */
        const __m256 am = _mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(am), _mm256_extractf128_ps(am, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        amax = _mm_cvtss_f32(h);
    }
#endif
    for (int64_t i = i0; i < k; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    return amax;
#endif
}

/* The quantized row for its maximum amax: sc = amax / 127 (1 for a zero row), q = x / sc
 * rounded half to even and clamped, *s = sc, *sum = the sum of q. A row holding a NaN (or an
 * infinity: then amax is infinite and x / sc NaN) gets the scale NaN, so that every output of
 * its token is NaN, as with the fake quantization (whose absmax is NaN) and the fp32 paths;
 * its NaN codes are 0. The NaN test rides on the careful path, which such a lane always
 * takes: the fast path pays nothing. */
static inline __attribute__((always_inline)) void row_quant(const float *x, int64_t k, float amax,
                                                             int8_t *q, int64_t ldq, float *s,
                                                             int32_t *sum) {
    float sc = amax / 127.0f;
    if (sc == 0.0f) sc = 1.0f;
#if TRI_ISA_AVX512
    {
        const int by_div = !(sc >= TRI_QUANT_MIN_RECIP_SCALE);
        const __m512 vs = _mm512_set1_ps(sc), vr = _mm512_set1_ps(TRI_QUANT_RECIP(amax, sc));
        const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
        const __m512 near_tie = _mm512_set1_ps(0.5f - TRI_QUANT_TIE);
        __m512i acc = _mm512_setzero_si512();
        __mmask16 nan = 0;
        for (int64_t i = 0; i < k; i += 16) {
            const __mmask16 m = k - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - i)) - 1u);
            const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
            __m512 v;
            /* fast path: x r rounded, no clamp (|x| <= amax: |y| <= 127 (1 + 3 2^-24) rounds
             * into [-127, 127]); a lane near a tie, NaN or infinite fails "d < near_tie"
             * (unordered compare) and takes the careful path: division where a lane is near a
             * tie, NaN -> 0 (as (int8_t)NaN in the scalar loop), clamped */
            const __m512 y = by_div ? xv : _mm512_mul_ps(xv, vr);
            v = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            const __m512 d = _mm512_abs_ps(_mm512_sub_ps(y, v));
            if (by_div || _mm512_cmp_ps_mask(d, near_tie, _CMP_NLT_UQ)) {
                if (by_div || _mm512_cmp_ps_mask(d, near_tie, _CMP_GE_OQ))
                    v = _mm512_roundscale_ps(_mm512_div_ps(xv, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                const __mmask16 ord = _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q);
                nan |= (__mmask16)(~ord & m);
                v = _mm512_maskz_mov_ps(ord, v);
                v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            }
            const __m512i qi = _mm512_maskz_mov_epi32(m, _mm512_cvtps_epi32(v));
            acc = _mm512_add_epi32(acc, qi);
            _mm_mask_storeu_epi8(q + i, m, _mm512_cvtepi32_epi8(qi));
        }
        if (ldq > k) memset(q + k, 0, (size_t)(ldq - k));
        *s = nan ? NAN : sc;
        if (sum) *sum = _mm512_reduce_add_epi32(acc);
        return;
    }
#endif
    int32_t acc = 0;
    int64_t i0 = 0;
    int nan = 0;
#if TRI_ISA_AVX2
    {
        const int by_div = !(sc >= TRI_QUANT_MIN_RECIP_SCALE);
        const __m256 vs = _mm256_set1_ps(sc), vr = _mm256_set1_ps(TRI_QUANT_RECIP(amax, sc));
        const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
        const __m256 near_tie = _mm256_set1_ps(0.5f - TRI_QUANT_TIE);
        __m256i va = _mm256_setzero_si256();
        __m256 vnan = _mm256_setzero_ps();
        /* 32 values a step. Fast path: y = x r rounded, no clamp (|x| <= amax, so |y| <= 127
         * (1 + 3 2^-24) rounds into [-127, 127]) and no NaN test: a lane that is near a tie,
         * NaN (x NaN, or amax infinite) or infinite fails "d < near_tie" (unordered compare)
         * and sends the 32 values through quant8_exact, the careful path. */
        if (!by_div) {
            const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            for (; i0 + 32 <= k; i0 += 32) {
                /* vcvtps2dq rounds half to even (the default MXCSR mode, as vroundps here) */
                __m256i qi[4];
                __m256 bad = _mm256_setzero_ps();
                for (int j = 0; j < 4; j++) {
                    const __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + i0 + 8 * j), vr);
                    qi[j] = _mm256_cvtps_epi32(y);
                    const __m256 d = _mm256_and_ps(_mm256_sub_ps(y, _mm256_cvtepi32_ps(qi[j])), absm);
                    bad = _mm256_or_ps(bad, _mm256_cmp_ps(d, near_tie, _CMP_NLT_UQ));
                }
                if (__builtin_expect(_mm256_movemask_ps(bad) != 0, 0)) quant32_exact(x + i0, vs, vr, qi, &vnan);
                va = _mm256_add_epi32(va, _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3])));
                const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
                _mm256_storeu_si256((__m256i *)(q + i0), _mm256_permutevar8x32_epi32(b, order));
            }
        }
        for (; i0 + 8 <= k; i0 += 8) {
            const __m256i qi = quant8_exact(_mm256_loadu_ps(x + i0), vs, vr, by_div, &vnan);
            va = _mm256_add_epi32(va, qi);
            const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
            _mm_storel_epi64((__m128i *)(q + i0), _mm_packs_epi16(w, w));
        }
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(va), _mm256_extracti128_si256(va, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
        acc = _mm_cvtsi128_si32(h);
        nan = _mm256_movemask_ps(vnan) != 0;
    }
#endif
    for (int64_t i = i0; i < k; i++) {
        float v = nearbyintf(x[i] / sc);
        if (v != v) {
            nan = 1;
            v = 0.0f;
        }
        v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
        int8_t qi = (int8_t)v;
        q[i] = qi;
        acc += qi;
    }
    if (ldq > k) memset(q + k, 0, (size_t)(ldq - k));
    *s = nan ? NAN : sc;
    if (sum) *sum = acc;
}

static void quantize_row(const float *x, int64_t k, int8_t *q, int64_t ldq, float *s, int32_t *sum) {
    row_quant(x, k, row_amax(x, k), q, ldq, s, sum);
}

/* Two rows, each exactly as quantize_row quantizes it, their latencies overlapped. */
static void quantize_row2(const float *x0, const float *x1, int64_t k, int8_t *q0, int8_t *q1,
                          int64_t ldq, float *s, int32_t *sum) {
    const float a0 = row_amax(x0, k), a1 = row_amax(x1, k);
    row_quant(x0, k, a0, q0, ldq, s, sum);
    row_quant(x1, k, a1, q1, ldq, s + 1, sum ? sum + 1 : NULL);
}

typedef struct {
    const float *x;
    int64_t m, k, ldq;
    int8_t *xq;
    float *s;
    int32_t *sum;
} QuantJob;

/* task t: rows 2t and 2t + 1 (the last alone when m is odd) */
static void quant_task(void *ctx, int64_t t, int tid) {
    QuantJob *J = ctx;
    (void)tid;
    const int64_t r = 2 * t, k = J->k;
    if (r + 1 < J->m)
        quantize_row2(J->x + r * k, J->x + (r + 1) * k, k, J->xq + r * J->ldq,
                      J->xq + (r + 1) * J->ldq, J->ldq, J->s + r, J->sum ? J->sum + r : NULL);
    else
        quantize_row(J->x + r * k, k, J->xq + r * J->ldq, J->ldq, J->s + r, J->sum ? J->sum + r : NULL);
}

static void quantize_all(const float *x, int64_t m, int64_t k, int8_t *xq, int64_t ldq, float *s,
                         int32_t *sum, int nthreads) {
    QuantJob J = {x, m, k, ldq, xq, s, sum};
    pool_run(quant_task, &J, (m + 1) / 2, m * k < 32768 ? 1 : nthreads);
}

TRI_EXPORT void tri_quantize_rows(const float *x, int64_t m, int64_t k, int8_t *xq, float *s,
                                  int nthreads) {
    quantize_all(x, m, k, xq, k, s, NULL, nthreads);
}

static inline float act_apply(int act, float v) {
    switch (act) {
    /* NaN passes through, as in torch.relu / F.relu6 */
    case TRI_ACT_RELU: return v < 0.0f ? 0.0f : v;
    case TRI_ACT_RELU6: return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
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

/* The epilogue's arithmetic on one value: times its scale, plus its bias and its residual
 * (where given), through the activation (epi_apply's, and store_i8_rows' with the fields
 * read once for a tile's rows). */
static inline float epi_math(float v, float scale, const float *bias, const float *residual, int act) {
    v *= scale;
    if (bias) v += *bias;
    if (residual) v += *residual;
    return act == TRI_ACT_NONE ? v : act_apply(act, v);
}

static inline float epi_apply(const Epi *e, int64_t n, int64_t t, int64_t col, float v) {
    return epi_math(v, e->scale[e->nscale == 1 ? 0 : col], e->bias ? e->bias + col : NULL,
                    e->residual ? e->residual + t * n + col : NULL, e->act);
}

