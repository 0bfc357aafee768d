/* tritium_x86.h: the AVX2 / AVX-512 micro-kernels (decode, dot products, direct-decode GEMV).
 * A section of tritium_kernels.c, included by it at this point (build.py renders it
 * inline into one translation unit); not a standalone header. */

#define TRI_HAVE_DIRECT 1

static inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* o[r] = the sum of a_r's 8 lanes, r = 0..3, in one transposing reduction (four separate
 * reductions took a fifth of a 4096-wide GEMV's per-row overhead) */
static inline void hsum4_i32(__m256i a0, __m256i a1, __m256i a2, __m256i a3, int32_t *o) {
    const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
    _mm_storeu_si128((__m128i *)o, _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1)));
}

static inline float hsum_f32(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The five t1.6 code vectors of one 32-byte block (digit i = codes of elements j + 32 i; a
 * byte is its five base-3 digits, most significant first), on AVX2. The quotient q = v / 9
 * (0..26: the top three digits) is (57 v) >> 9, exact for every byte, by two vpmaddubsw (the
 * even and the odd bytes of each 16-bit lane times 57); the remainder r = v - 9 q (0..8) gives
 * the last two digits by two 16-entry tables. q's top digit and s = q mod 9 (its other two
 * digits, by the same two tables) come from two conditional subtractions, min(a, a - 9)
 * (a - 9 wraps above a when a < 9), the amount taken (0, 9 or 18: low nibbles 0, 9, 2)
 * mapping to the digit through one more table. 20 instructions where subtracting 81, 27 and 9
 * twice each took 23 (and 20 multiplies in 16-bit fixed point): with the int16 sums of 12
 * blocks widened once, the AVX2 t1.6 GEMV 16% faster (docs/formats.md). */
#define T16_TAB_(a, b, c, d, e, f, g, h, i) \
    _mm256_setr_epi8(a, b, c, d, e, f, g, h, i, 0, 0, 0, 0, 0, 0, 0, a, b, c, d, e, f, g, h, i, 0, 0, 0, 0, 0, 0, 0)
#define T16_DECODE(v, c0, c1, c2, c3, c4)                                                          \
    do {                                                                                           \
        const __m256i hi3_ = T16_TAB_(0, 0, 0, 1, 1, 1, 2, 2, 2); /* x < 9: x / 3 */             \
        const __m256i lo3_ = T16_TAB_(0, 1, 2, 0, 1, 2, 0, 1, 2); /* x < 9: x % 3 */             \
        const __m256i n9_ = _mm256_set1_epi8(9);                                                   \
        const __m256i qe_ = _mm256_srli_epi16(_mm256_maddubs_epi16((v), _mm256_set1_epi16(57)), 9); \
        const __m256i qo_ = _mm256_srli_epi16(_mm256_maddubs_epi16((v), _mm256_set1_epi16(57 << 8)), 1); \
        const __m256i q_ = _mm256_or_si256(qe_, _mm256_and_si256(qo_, _mm256_set1_epi16((short)0xFF00))); \
        const __m256i r_ = _mm256_sub_epi8((v), _mm256_add_epi8(q_, _mm256_slli_epi16(q_, 3)));   \
        const __m256i a_ = _mm256_min_epu8(q_, _mm256_sub_epi8(q_, n9_));                          \
        const __m256i s_ = _mm256_min_epu8(a_, _mm256_sub_epi8(a_, n9_));                          \
        c0 = _mm256_shuffle_epi8(_mm256_setr_epi8(0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,  \
                                                  0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0), \
                                 _mm256_and_si256(_mm256_sub_epi8(q_, s_), _mm256_set1_epi8(15))); \
        c1 = _mm256_shuffle_epi8(hi3_, s_);                                                        \
        c2 = _mm256_shuffle_epi8(lo3_, s_);                                                        \
        c3 = _mm256_shuffle_epi8(hi3_, r_);                                                        \
        c4 = _mm256_shuffle_epi8(lo3_, r_);                                                        \
    } while (0)

#if TRI_ISA_AVX512 && defined(__AVX512VBMI__)
/* The five t1.6 digit planes of 64 bytes (two blocks) with AVX-512 VBMI. q = v / 9 (0..26,
 * the top three digits) is (57 v) >> 9, exact for v <= 255, by two vpmaddubsw (the even and
 * the odd bytes of each 16-bit lane times 57); r = v - 9 q (0..8, the last two digits). Then
 * one vpermb per top digit (a 27-entry table indexed by q) and one vpshufb per last digit.
 * 15 instructions where the 256-entry tables took 15 lookups (two vpermi2b and a blend per
 * digit), and 2 of them on the multiply pipes instead of 10 on the shuffle pipes: the t1.6
 * int8 GEMV 1.4x faster on Zen 4 (4096x4096 batch 1, one thread). An invalid byte (above
 * 242; validation keeps them out) decodes to some digits without reading past a table. */
static const uint8_t g_t16_qdig[3][64] __attribute__((aligned(64))) = {
#define T16_ROW_(f) { f(0), f(1), f(2), f(3), f(4), f(5), f(6), f(7), f(8), f(9), f(10), f(11), \
                      f(12), f(13), f(14), f(15), f(16), f(17), f(18), f(19), f(20), f(21),     \
                      f(22), f(23), f(24), f(25), f(26) }
#define T16_D0_(q) ((q) / 9)
#define T16_D1_(q) ((q) / 3 % 3)
#define T16_D2_(q) ((q) % 3)
    T16_ROW_(T16_D0_), T16_ROW_(T16_D1_), T16_ROW_(T16_D2_)
#undef T16_ROW_
#undef T16_D0_
#undef T16_D1_
#undef T16_D2_
};
static inline __attribute__((always_inline)) void t16_decode512(__m512i v, __m512i d[5]) {
    const __m512i even = _mm512_srli_epi16(_mm512_maddubs_epi16(v, _mm512_set1_epi16(57)), 9);
    const __m512i odd = _mm512_srli_epi16(_mm512_maddubs_epi16(v, _mm512_set1_epi16(57 << 8)), 1);
    const __m512i q = _mm512_or_si512(even, _mm512_and_si512(odd, _mm512_set1_epi16((short)0xFF00)));
    const __m512i r = _mm512_sub_epi8(v, _mm512_add_epi8(q, _mm512_slli_epi16(q, 3)));
    d[0] = _mm512_permutexvar_epi8(q, _mm512_load_si512(g_t16_qdig[0]));
    d[1] = _mm512_permutexvar_epi8(q, _mm512_load_si512(g_t16_qdig[1]));
    d[2] = _mm512_permutexvar_epi8(q, _mm512_load_si512(g_t16_qdig[2]));
    d[3] = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0)), r);
    d[4] = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0)), r);
}
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
        for (; b + 2 <= nb; b += 2) {
            __m512i dg[5];
            t16_decode512(_mm512_loadu_si512(w + b * 32), dg);
            uint8_t *d = c + b * TRI_T16_BLOCK;
            for (int i = 0; i < 5; i++) {
                _mm256_storeu_si256((__m256i *)(d + 32 * i), _mm512_castsi512_si256(dg[i]));
                _mm256_storeu_si256((__m256i *)(d + TRI_T16_BLOCK + 32 * i), _mm512_extracti64x4_epi64(dg[i], 1));
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
/* The direct GEMVs stream their weight rows from memory once per call (a decoder's projections
 * are far larger than the caches); the hardware prefetchers follow four interleaved short rows
 * poorly (measured: 5.2 GB/s from DRAM on one thread, 13.6 GB/s copy bandwidth). Each weight
 * load prefetches the byte `pf` ahead (the caller's distance: the next tile of 4 rows). */
#define PF_ROW(p) _mm_prefetch((const char *)(p) + pf, _MM_HINT_T0)
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
    hsum4_i32(a0, a1, a2, a3, o);
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
    hsum4_i32(a0, a1, a2, a3, o);
    hsum4_i32(b0, b1, b2, b3, o + 4);
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

static void gemv_direct4(int fmt, const uint8_t *const *w, const int8_t *x, int64_t nb, int32_t *o,
                         int64_t pf) {
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
        PF_ROW((wp) + b * 32);                                                                        \
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
        /* Four blocks a step, one shift per block. A byte holds the codes of k = j, j + 32,
         * j + 64, j + 96 in bits 0-1, 2-3, 4-5, 6-7; with t = v >> 4 (16-bit shift: the low
         * byte takes the high byte's low bits, masked off below), v & 3 and t & 3 are the codes
         * of x0 and x2, and v & 12 and t & 12 four times those of x1 and x3. The products of the
         * first pair sum into lo, of the second into hi (a multiple of 4), and hi / 4 (an exact
         * arithmetic shift) joins lo once per step: 13 operations a block where shifting every
         * field down took 15. Bounds (any byte, even the code 3 no valid row holds, and x in
         * [-128, 127]): a maddubs pair of lo is at most 2 * 3 * 128 = 768 in magnitude, of hi
         * 2 * 12 * 128 = 3072: a step of 4 blocks keeps hi within 24576, and two steps keep
         * lo (8 * 1536 plus 2 * 24576 / 4) within 24576 before one widening madd per row. */
/* One row's block: lo += codes(x0) . x0 + codes(x2) . x2, hi += 4 codes(x1) . x1 +
 * 4 codes(x3) . x3 (see above). One asm statement, the activations read from L1 as memory
 * operands (unaligned: __m256i_u): in C, GCC hoisted every maddubs of an unrolled step ahead
 * of the adds and spilled their results (and the accumulators) to the stack. */
#define T2_LOHI(L_, H_, wp, xb)                                                                    \
    do {                                                                                           \
        __m256i v_, t_, a_, c_;                                                                    \
        __asm__("vmovdqu %[w], %[v]\n\t"                                                           \
                "vpsrlw $4, %[v], %[t]\n\t"                                                        \
                "vpand %[m3], %[v], %[a]\n\t"                                                      \
                "vpmaddubsw %[x0], %[a], %[a]\n\t"                                                 \
                "vpand %[m3], %[t], %[c]\n\t"                                                      \
                "vpmaddubsw %[x2], %[c], %[c]\n\t"                                                 \
                "vpaddw %[c], %[a], %[a]\n\t"                                                      \
                "vpaddw %[a], %[lo], %[lo]\n\t"                                                    \
                "vpand %[m12], %[v], %[v]\n\t"                                                     \
                "vpmaddubsw %[x1], %[v], %[v]\n\t"                                                 \
                "vpand %[m12], %[t], %[t]\n\t"                                                     \
                "vpmaddubsw %[x3], %[t], %[t]\n\t"                                                 \
                "vpaddw %[t], %[v], %[v]\n\t"                                                      \
                "vpaddw %[v], %[hi], %[hi]"                                                        \
                : [lo] "+x"(L_), [hi] "+x"(H_), [v] "=&x"(v_), [t] "=&x"(t_), [a] "=&x"(a_),         \
                  [c] "=&x"(c_)                                                                    \
                : [w] "m"(*(const __m256i_u *)(wp)), [m3] "x"(m3), [m12] "x"(m12),                    \
                  [x0] "m"(*(const __m256i_u *)(xb)), [x1] "m"(*(const __m256i_u *)((xb) + 32)),        \
                  [x2] "m"(*(const __m256i_u *)((xb) + 64)), [x3] "m"(*(const __m256i_u *)((xb) + 96))); \
    } while (0)
        const __m256i m3 = _mm256_set1_epi8(3), m12 = _mm256_set1_epi8(12);
        for (; b + 8 <= nb; b += 8) {
            __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
            for (int half = 0; half < 2; half++) {
                __m256i h0 = _mm256_setzero_si256(), h1 = h0, h2 = h0, h3 = h0;
                for (int j = 0; j < 4; j++) {
                    const int64_t bj = b + 4 * half + j;
                    const int8_t *xb = x + bj * TRI_T2_BLOCK;
                    const int64_t o0 = bj * 32;
                    if (j % 2 == 0) { PF_ROW(w0 + o0); PF_ROW(w1 + o0); PF_ROW(w2 + o0); PF_ROW(w3 + o0); }
                    T2_LOHI(s0, h0, w0 + o0, xb);
                    T2_LOHI(s1, h1, w1 + o0, xb);
                    T2_LOHI(s2, h2, w2 + o0, xb);
                    T2_LOHI(s3, h3, w3 + o0, xb);
                }
                s0 = _mm256_add_epi16(s0, _mm256_srai_epi16(h0, 2));
                s1 = _mm256_add_epi16(s1, _mm256_srai_epi16(h1, 2));
                s2 = _mm256_add_epi16(s2, _mm256_srai_epi16(h2, 2));
                s3 = _mm256_add_epi16(s3, _mm256_srai_epi16(h3, 2));
            }
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(s0, ones));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(s1, ones));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(s2, ones));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(s3, ones));
        }
#undef T2_LOHI
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
        /* Two blocks per zmm, decoded by t16_decode512. */
        __m512i z0 = _mm512_setzero_si512(), z1 = z0, z2 = z0, z3 = z0;
        __m512i *zacc[4] = {&z0, &z1, &z2, &z3};
        for (; b + 2 <= nb; b += 2) {
            const int8_t *xa = x + b * TRI_T16_BLOCK, *xc = xa + TRI_T16_BLOCK;
            __m512i xv[5];
            for (int i = 0; i < 5; i++)
                xv[i] = _mm512_inserti64x4(_mm512_castsi256_si512(LD(xa + 32 * i)), LD(xc + 32 * i), 1);
            for (int r = 0; r < 4; r++) {
                __m512i dg[5];
                t16_decode512(_mm512_loadu_si512(w[r] + b * 32), dg);
                PF_ROW(w[r] + b * 32);
                __m512i acc = *zacc[r];
                for (int i = 0; i < 5; i++) DPBUSD512(acc, dg[i], xv[i]);
                *zacc[r] = acc;
            }
        }
        a0 = _mm256_add_epi32(a0, _mm256_add_epi32(_mm512_castsi512_si256(z0), _mm512_extracti64x4_epi64(z0, 1)));
        a1 = _mm256_add_epi32(a1, _mm256_add_epi32(_mm512_castsi512_si256(z1), _mm512_extracti64x4_epi64(z1, 1)));
        a2 = _mm256_add_epi32(a2, _mm256_add_epi32(_mm512_castsi512_si256(z2), _mm512_extracti64x4_epi64(z2, 1)));
        a3 = _mm256_add_epi32(a3, _mm256_add_epi32(_mm512_castsi512_si256(z3), _mm512_extracti64x4_epi64(z3, 1)));
#endif
        /* T16_RUN blocks summed in int16 before one widening madd per row: a block's five
         * maddubs pair sums are at most 5 * 512 = 2560 in magnitude, 12 blocks 30720 */
#define T16_RUN 12
        for (; b < nb; b += T16_RUN) {
            const int64_t b1 = min64(nb, b + T16_RUN);
            __m256i s[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                            _mm256_setzero_si256()};
            for (int64_t bb = b; bb < b1; bb++) {
                const int8_t *xb = x + bb * TRI_T16_BLOCK;
                for (int r = 0; r < 4; r++) {
                    __m256i c0, c1, c2, c3, c4, v = LD(w[r] + bb * 32);
                    PF_ROW(w[r] + bb * 32);
                    T16_DECODE(v, c0, c1, c2, c3, c4);
                    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(c0, LD(xb)), _mm256_maddubs_epi16(c1, LD(xb + 32)));
                    p = _mm256_add_epi16(p, _mm256_add_epi16(_mm256_maddubs_epi16(c2, LD(xb + 64)), _mm256_maddubs_epi16(c3, LD(xb + 96))));
                    s[r] = _mm256_add_epi16(s[r], _mm256_add_epi16(p, _mm256_maddubs_epi16(c4, LD(xb + 128))));
                }
            }
            for (int r = 0; r < 4; r++) *acc[r] = _mm256_add_epi32(*acc[r], _mm256_madd_epi16(s[r], ones));
        }
#undef T16_RUN
    }
    hsum4_i32(a0, a1, a2, a3, o);
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
#define TRI_F32_XPERM 0
#else
typedef __m256 facc_t;
#define FACC_ZERO() _mm256_setzero_ps()
#define FACC_SUM(a, b) hsum_f32(_mm256_add_ps((a), (b)))
#define FMA_CODES fma_codes32

/* The AVX2 fp32 GEMV on x permuted within each group of 32 (f32_xperm_rows, tritium_kernels.c:
 * positions 8q..8q+3 hold x[4q..4q+3], 8q+4..8q+7 hold x[16+4q..16+4q+3]). Codes 0..2 become
 * the float bit patterns of -2.0, 0.0 and +2.0 without a conversion: one vpshufb maps each
 * code to its top byte (0xC0, 0x00, 0x40) and four vpshufb spread a lane's bytes 4q..4q+3 to
 * the top bytes of its four dwords (the other bytes zero). 9 instructions per 32 trits where
 * widening by vpmovsxbd and converting by vcvtdq2ps took 16; the products are exact (x times
 * a power of two) and the sum is twice the dot product, halved once at the end (exact: the
 * caller keeps x far below the float range: f32_xperm_rows). */
#define TRI_F32_XPERM 1
#define XP_SPREAD_(q)                                                                                  \
    _mm256_setr_epi8(-128, -128, -128, 4 * (q), -128, -128, -128, 4 * (q) + 1, -128, -128, -128, 4 * (q) + 2, \
                     -128, -128, -128, 4 * (q) + 3, -128, -128, -128, 4 * (q), -128, -128, -128, 4 * (q) + 1, \
                     -128, -128, -128, 4 * (q) + 2, -128, -128, -128, 4 * (q) + 3)
static inline __m256 fma_codes32_xperm(__m256i c, const float *x, __m256 acc) {
    const __m256i top = _mm256_shuffle_epi8(
        _mm256_setr_epi8(-64, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                         -64, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), c);
    acc = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_shuffle_epi8(top, XP_SPREAD_(0))), _mm256_loadu_ps(x), acc);
    acc = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_shuffle_epi8(top, XP_SPREAD_(1))), _mm256_loadu_ps(x + 8), acc);
    acc = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_shuffle_epi8(top, XP_SPREAD_(2))), _mm256_loadu_ps(x + 16), acc);
    return _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_shuffle_epi8(top, XP_SPREAD_(3))), _mm256_loadu_ps(x + 24), acc);
}
#endif

/* x is zero padded to nb whole blocks; with xperm (the AVX2 path only) also permuted by
 * f32_xperm_rows, and the sums are twice the dot products until halved at the end. */
#if TRI_F32_XPERM
#define FMA_C(c, xp, a) (xperm ? fma_codes32_xperm((c), (xp), (a)) : FMA_CODES((c), (xp), (a)))
#else
#define FMA_C(c, xp, a) FMA_CODES((c), (xp), (a))
#endif
static inline __attribute__((always_inline)) void f32_gemv_direct4_impl(
    int fmt, const uint8_t *const *w, const float *x, int64_t nb, float *o, int64_t pf, const int xperm) {
    (void)xperm;
    facc_t a[4][2];
    for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = FACC_ZERO();
    if (fmt == TRI_FMT_T2) {
        const __m256i m3 = _mm256_set1_epi8(3);
        for (int64_t b = 0; b < nb; b++) {
            const float *xb = x + b * TRI_T2_BLOCK;
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                const __m256i v = LD(w[r] + b * 32);
                PF_ROW(w[r] + b * 32);
                a[r][0] = FMA_C(_mm256_and_si256(v, m3), xb, a[r][0]);
                a[r][1] = FMA_C(_mm256_and_si256(_mm256_srli_epi16(v, 2), m3), xb + 32, a[r][1]);
                a[r][0] = FMA_C(_mm256_and_si256(_mm256_srli_epi16(v, 4), m3), xb + 64, a[r][0]);
                a[r][1] = FMA_C(_mm256_and_si256(_mm256_srli_epi16(v, 6), m3), xb + 96, a[r][1]);
            }
        }
    } else {
        int64_t b = 0;
#if TRI_ISA_AVX512 && defined(__AVX512VBMI__)
        for (; b + 2 <= nb; b += 2) { /* two blocks per zmm, decoded by t16_decode512 */
            const float *xa = x + b * TRI_T16_BLOCK, *xc = xa + TRI_T16_BLOCK;
            for (int r = 0; r < 4; r++) {
                __m512i dg[5];
                t16_decode512(_mm512_loadu_si512(w[r] + b * 32), dg);
                PF_ROW(w[r] + b * 32);
                for (int i = 0; i < 5; i++) {
                    const __m512i d = dg[i];
                    a[r][i & 1] = FMA_C(_mm512_castsi512_si256(d), xa + 32 * i, a[r][i & 1]);
                    a[r][(i + 1) & 1] = FMA_C(_mm512_extracti64x4_epi64(d, 1), xc + 32 * i, a[r][(i + 1) & 1]);
                }
            }
        }
#endif
        for (; b < nb; b++) {
            const float *xb = x + b * TRI_T16_BLOCK;
            for (int r = 0; r < 4; r++) {
                __m256i c0, c1, c2, c3, c4, v = LD(w[r] + b * 32);
                PF_ROW(w[r] + b * 32);
                T16_DECODE(v, c0, c1, c2, c3, c4);
                a[r][0] = FMA_C(c0, xb, a[r][0]);
                a[r][1] = FMA_C(c1, xb + 32, a[r][1]);
                a[r][0] = FMA_C(c2, xb + 64, a[r][0]);
                a[r][1] = FMA_C(c3, xb + 96, a[r][1]);
                a[r][0] = FMA_C(c4, xb + 128, a[r][0]);
            }
        }
    }
    for (int r = 0; r < 4; r++) o[r] = FACC_SUM(a[r][0], a[r][1]);
}
#undef FMA_C

static void f32_gemv_direct4(int fmt, const uint8_t *const *w, const float *x, int64_t nb, float *o,
                             int64_t pf, int xperm) {
    if (TRI_F32_XPERM && xperm) {
        f32_gemv_direct4_impl(fmt, w, x, nb, o, pf, 1);
        for (int r = 0; r < 4; r++) o[r] *= 0.5f;
    } else {
        f32_gemv_direct4_impl(fmt, w, x, nb, o, pf, 0);
    }
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
