/* tritium_g2avx2.h: the int8 batch GEMM of the AVX2 path (no VNNI), its weight re-layout and
 * micro-kernels. A section of tritium_kernels.c, included by it at this point (build.py
 * renders it inline into one translation unit); not a standalone header. tritium_g2.h
 * routes its entry points (tri_g2_bytes, tri_g2_pack, run_g2) here on the AVX2 path.
 *
 * Layout (made once per weight, cached by the runtime): panels of 32 output channels; the
 * 32 bytes of group g of panel p hold the 2-bit codes (trit + 1) of its channels at
 * k = 4g .. 4g + 3: bits 2j, 2j + 1 of byte 4d + i are the code of channel 32 p + 8 j + d at
 * k = 4 g + i. So ((v >> 2j) & 3) of one 32-byte load is a ymm of 8 dwords = 8 channels x 4
 * consecutive k as code bytes (0..2), the unsigned operand of vpmaddubsw; the signed operand
 * is a vpbroadcastd of the token's 4 int8 activations. The i16 pair sums (|c0 x0 + c1 x1| <=
 * 512) are added in i16 for at most G2A_KB groups (63 * 512 < 32768: never wraps), then
 * widened with vpmaddwd by ones into the int32 tile. The micro-kernel keeps G2A_MR tokens x
 * 2 ymm (16 channels, half a panel) of accumulators in registers: every expanded weight
 * vector serves MR tokens, every broadcast 2 vectors. No horizontal sums; K only rounds up to
 * whole groups of 4. Tasks: (panel) x (chunk of G2A_MC tokens) through the pool.
 * ------------------------------------------------------------------------------------ */

#define TRI_HAVE_G2A TRI_ISA_AVX2

#define G2A_KB 63 /* groups of 4 k added in i16 before widening */
#define G2A_MR 4  /* tokens per micro-kernel call */
#define G2A_MC 64 /* tokens per task */
#define G2A_TILE_BYTES ((size_t)G2A_MC * 32 * sizeof(int32_t))

static inline int64_t g2a_n32(int64_t n) { return (n + 31) / 32; }

static int64_t g2a_bytes(int64_t n, int64_t k) { return g2a_n32(n) * ((k + 3) / 4) * 32; }

typedef struct {
    int fmt;
    const uint8_t *w;
    int64_t n, k, row_bytes, nb, kpad;
    uint8_t *out;
    _Atomic int oom;
} G2APackJob;

static void g2a_pack_task(void *ctx, int64_t p, int tid) {
    G2APackJob *J = ctx;
    (void)tid;
    const int64_t k4 = (J->k + 3) / 4;
    uint8_t *codes = tri_alloc((size_t)(32 * J->kpad));
    if (!codes) {
        atomic_store(&J->oom, 1);
        return;
    }
    for (int c = 0; c < 32; c++) {
        const int64_t row = 32 * p + c;
        if (row < J->n) {
            decode_codes(J->fmt, J->w + row * J->row_bytes, J->nb, codes + c * J->kpad);
            /* codes past k: trit 0 (the activations there are 0 too) */
            memset(codes + c * J->kpad + J->k, 1, (size_t)(J->kpad - J->k));
        } else {
            memset(codes + c * J->kpad, 1, (size_t)J->kpad); /* a zero-trit channel */
        }
    }
    uint8_t *o = J->out + p * k4 * 32;
    for (int64_t g = 0; g < k4; g++)
        for (int d = 0; d < 8; d++)
            for (int i = 0; i < 4; i++) {
                const int64_t kk = 4 * g + i;
                uint8_t b = 0;
                for (int j = 0; j < 4; j++) b |= (uint8_t)(codes[(8 * j + d) * J->kpad + kk] << (2 * j));
                o[g * 32 + 4 * d + i] = b;
            }
    free(codes);
}

static int g2a_pack(int fmt, const uint8_t *w, int64_t n, int64_t k, int64_t row_bytes,
                    uint8_t *out, int nthreads) {
    G2APackJob J = {.fmt = fmt, .w = w, .n = n, .k = k, .row_bytes = row_bytes, .out = out};
    J.nb = n_blocks(fmt, k);
    J.kpad = J.nb * blk_elems(fmt);
    atomic_init(&J.oom, 0);
    pool_run(g2a_pack_task, &J, g2a_n32(n), nthreads);
    return atomic_load(&J.oom);
}

#if TRI_HAVE_G2A
typedef int32_t tri_a32u __attribute__((may_alias, aligned(1)));

/* c[r][8 v + d] (+)= the sums over groups g0..g1-1 of half h of a panel (channels 16 h ..
 * 16 h + 15 of it) for R tokens. Always inlined into one function per (R, h). */
static inline __attribute__((always_inline)) void g2a_micro_body(
    const int R, const int h, const int8_t *const *xr, const uint8_t *wp, int64_t g0,
    int64_t g1, int32_t *c, int acc_in) {
    const __m256i m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    for (int64_t b0 = g0; b0 < g1; b0 += G2A_KB) {
        const int64_t b1 = min64(g1, b0 + G2A_KB);
        __m256i acc[G2A_MR][2];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
        const uint8_t *w = wp + 32 * b0;
        const int8_t *x[G2A_MR];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) x[r] = xr[r] + 4 * b0;
        for (int64_t g = b0; g < b1; g++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)w);
            w += 32;
            const __m256i w0 = _mm256_and_si256(h ? _mm256_srli_epi16(v, 4) : v, m3);
            const __m256i w1 = _mm256_and_si256(_mm256_srli_epi16(v, h ? 6 : 2), m3);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const __m256i xb = _mm256_set1_epi32(*(const tri_a32u *)x[r]);
                x[r] += 4;
                acc[r][0] = _mm256_add_epi16(acc[r][0], _mm256_maddubs_epi16(w0, xb));
                acc[r][1] = _mm256_add_epi16(acc[r][1], _mm256_maddubs_epi16(w1, xb));
            }
        }
        const int in = acc_in || b0 > g0;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 2
            for (int v = 0; v < 2; v++) {
                __m256i s = _mm256_madd_epi16(acc[r][v], ones);
                int32_t *dst = c + r * 32 + 8 * v;
                if (in) s = _mm256_add_epi32(s, _mm256_loadu_si256((const __m256i *)dst));
                _mm256_storeu_si256((__m256i *)dst, s);
            }
    }
}

typedef void (*g2a_micro_fn)(const int8_t *const *, const uint8_t *, int64_t, int64_t, int32_t *,
                             int);
#define G2A_MICRO(R, H)                                                                       \
    __attribute__((noinline)) static void g2a_micro_##R##_##H(                                \
        const int8_t *const *xr, const uint8_t *wp, int64_t g0, int64_t g1, int32_t *c,       \
        int acc_in) {                                                                         \
        g2a_micro_body(R, H, xr, wp, g0, g1, c, acc_in);                                      \
    }
G2A_MICRO(1, 0)
G2A_MICRO(2, 0)
G2A_MICRO(3, 0)
G2A_MICRO(4, 0)
G2A_MICRO(1, 1)
G2A_MICRO(2, 1)
G2A_MICRO(3, 1)
G2A_MICRO(4, 1)

/* g2a_micro_tab[h][R]: R tokens (1 <= R <= MR), half h of the panel */
static const g2a_micro_fn g2a_micro_tab[2][G2A_MR + 1] = {
    {NULL, g2a_micro_1_0, g2a_micro_2_0, g2a_micro_3_0, g2a_micro_4_0},
    {NULL, g2a_micro_1_1, g2a_micro_2_1, g2a_micro_3_1, g2a_micro_4_1},
};

/* y[t0 .. t1, col .. col + 8) (under the mask msk unless whole) from the tile's column acc (32
 * int32 a token): ((sum - sumx) sx) sc, rounded, + bias, + residual, then the activation. The
 * activation and whether there is a bias are constants of each inlined copy. */
static inline __attribute__((always_inline)) void g2a_epi_col(
    const Problem *P, int64_t t0, int64_t t1, int64_t col, const int32_t *acc, __m256 sc, __m256 bi,
    __m256i msk, int whole, int has_res, const int act, const int has_bias) {
    const int64_t n = P->n;
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    for (int64_t t = t0; t < t1; t++, acc += 32) {
        const __m256i a = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)acc), _mm256_set1_epi32(P->sumx[t]));
        __m256 f = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a), _mm256_set1_ps(P->sx[t])), sc);
        /* the product is rounded before the bias is added, as everywhere else: without this
         * GCC fuses the two into an FMA (-ffp-contract=fast), one rounding fewer */
        __asm__("" : "+x"(f));
        if (has_bias) f = _mm256_add_ps(f, bi);
        float *dst = P->y + t * n + col;
        if (has_res) {
            const float *r = P->epi.residual + t * n + col;
            f = _mm256_add_ps(f, whole ? _mm256_loadu_ps(r) : _mm256_maskload_ps(r, msk));
        }
        /* vmaxps/vminps return the second operand when one is NaN: NaN passes, as in torch */
        if (act == TRI_ACT_RELU) f = _mm256_max_ps(zero, f);
        else if (act == TRI_ACT_RELU6) f = _mm256_min_ps(six, _mm256_max_ps(zero, f));
        if (whole) _mm256_storeu_ps(dst, f);
        else _mm256_maskstore_ps(dst, msk, f);
    }
}

/* y[t0 .. t1, c0 .. c0 + nc) (nc <= 32) from a tile of int32 sums (32 a token), in 8-channel
 * vectors (a last one of fewer channels, a 10-class head, loads and stores under a mask): the
 * epilogue of a whole panel, its per-channel scales and biases loaded once (once a token and
 * 8 channels, the set-up was most of the epilogue's time at 64 tokens x 128 channels). The
 * arithmetic of epi_apply, lane by lane; activations other than none/relu/relu6 go through
 * epi_apply itself. */
static void g2a_epilogue_tile(const Problem *P, int64_t t0, int64_t t1, int64_t c0, int64_t nc,
                              const int32_t *tile) {
    const Epi *e = &P->epi;
    const int64_t n = P->n;
    const int nv = (int)((nc + 7) / 8);
    const int full = nc == 8 * nv;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i msk[4];
    for (int v = 0; v < nv; v++) msk[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)min64(8, nc - 8 * v)), lanes);
    if (P->yi) { /* int32 output: the sums less the code offset */
        for (int64_t t = t0; t < t1; t++) {
            const __m256i sumx = _mm256_set1_epi32(P->sumx[t]);
            for (int v = 0; v < nv; v++) {
                const __m256i a = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(tile + (t - t0) * 32 + 8 * v)), sumx);
                _mm256_maskstore_epi32(P->yi + t * n + c0 + 8 * v, msk[v], a);
            }
        }
        return;
    }
    const int act = e->act;
    if (act != TRI_ACT_NONE && act != TRI_ACT_RELU && act != TRI_ACT_RELU6) {
        for (int64_t t = t0; t < t1; t++) {
            const __m256i sumx = _mm256_set1_epi32(P->sumx[t]);
            const __m256 sx = _mm256_set1_ps(P->sx[t]);
            for (int v = 0; v < nv; v++) {
                const __m256i a = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(tile + (t - t0) * 32 + 8 * v)), sumx);
                float tmp[8];
                _mm256_storeu_ps(tmp, _mm256_mul_ps(_mm256_cvtepi32_ps(a), sx));
                for (int j = 0; j < 8 && 8 * v + j < nc; j++)
                    P->y[t * n + c0 + 8 * v + j] = epi_apply(e, n, t, c0 + 8 * v + j, tmp[j]);
            }
        }
        return;
    }
    /* one 8-channel column at a time, its scales and biases in registers, the tokens down it */
    for (int v = 0; v < nv; v++) {
        const __m256 sc = e->nscale == 1 ? _mm256_set1_ps(e->scale[0]) : _mm256_maskload_ps(e->scale + c0 + 8 * v, msk[v]);
        const int whole = full || v < nv - 1, has_res = e->residual != NULL;
        const int64_t col = c0 + 8 * v;
        const int32_t *acc = tile + 8 * v;
        if (e->bias) {
            const __m256 bi = _mm256_maskload_ps(e->bias + col, msk[v]);
            switch (act) {
            case TRI_ACT_RELU: g2a_epi_col(P, t0, t1, col, acc, sc, bi, msk[v], whole, has_res, TRI_ACT_RELU, 1); break;
            case TRI_ACT_RELU6: g2a_epi_col(P, t0, t1, col, acc, sc, bi, msk[v], whole, has_res, TRI_ACT_RELU6, 1); break;
            default: g2a_epi_col(P, t0, t1, col, acc, sc, bi, msk[v], whole, has_res, TRI_ACT_NONE, 1); break;
            }
        } else {
            const __m256 bi = _mm256_setzero_ps();
            switch (act) {
            case TRI_ACT_RELU: g2a_epi_col(P, t0, t1, col, acc, sc, bi, msk[v], whole, has_res, TRI_ACT_RELU, 0); break;
            case TRI_ACT_RELU6: g2a_epi_col(P, t0, t1, col, acc, sc, bi, msk[v], whole, has_res, TRI_ACT_RELU6, 0); break;
            default: g2a_epi_col(P, t0, t1, col, acc, sc, bi, msk[v], whole, has_res, TRI_ACT_NONE, 0); break;
            }
        }
    }
}

typedef struct {
    const Problem *P;
    const uint8_t *gw;
    int64_t n32, k4;
    int32_t *tile[TRI_MAX_THREADS]; /* per-thread MC x 32 int32 sums, the thread's scratch */
    _Atomic int err;
} G2AJob;

/* task = chunk * n32 + panel: consecutive tasks share the chunk's activations */
static void g2a_task(void *ctx, int64_t task, int tid) {
    G2AJob *J = ctx;
    const Problem *P = J->P;
    const int64_t p = task % J->n32, ch = task / J->n32;
    const int64_t t0 = ch * G2A_MC, t1 = min64(P->m, t0 + G2A_MC);
    if (!J->tile[tid]) J->tile[tid] = scratch_get(TRI_SCRATCH_TILE, G2A_TILE_BYTES);
    int32_t *tile = J->tile[tid];
    if (!tile) {
        atomic_store(&J->err, 1);
        return;
    }
    const uint8_t *wp = J->gw + p * J->k4 * 32;
    const int64_t c0 = 32 * p, nc = min64(32, P->n - c0);
    for (int h = 0; h < 2 && 16 * h < nc; h++) {
        for (int64_t t = t0; t < t1; t += G2A_MR) {
            const int rows = (int)min64(G2A_MR, t1 - t);
            int32_t *c = tile + (t - t0) * 32 + 16 * h;
            if (J->k4 == 0) {
                for (int r = 0; r < rows; r++) memset(c + r * 32, 0, 16 * sizeof(int32_t));
                continue;
            }
            const int8_t *xr[G2A_MR];
            for (int r = 0; r < rows; r++) xr[r] = P->xq + (t + r) * P->ldx;
            g2a_micro_tab[h][rows](xr, wp, 0, J->k4, c, 0);
        }
    }
    g2a_epilogue_tile(P, t0, t1, c0, nc, tile);
}

/* The int8 GEMM on the AVX2 layout gw (NULL: re-laid out here for this call). */
static int run_g2a(const Problem *P, const uint8_t *gw, int nthreads) {
    if (nthreads > TRI_MAX_THREADS) nthreads = TRI_MAX_THREADS;
    if (nthreads < 1) nthreads = 1;
    uint8_t *own = NULL;
    if (!gw) {
        own = tri_alloc((size_t)g2a_bytes(P->n, P->k));
        if (!own || g2a_pack(P->fmt, P->w, P->n, P->k, P->row_bytes, own, nthreads)) {
            free(own);
            return 1;
        }
        gw = own;
    }
    G2AJob *J = calloc(1, sizeof(G2AJob));
    if (!J) {
        free(own);
        return 1;
    }
    J->P = P;
    J->gw = gw;
    J->n32 = g2a_n32(P->n);
    J->k4 = (P->k + 3) / 4;
    atomic_init(&J->err, 0);
    const int64_t nchunk = (P->m + G2A_MC - 1) / G2A_MC;
    const double work = (double)P->m * (double)P->n * (double)P->k * TRI_INT8_WORK;
    pool_run(g2a_task, J, J->n32 * nchunk, team_for_work(work, nthreads));
    const int err = atomic_load(&J->err);
    for (int i = 0; i < TRI_MAX_THREADS; i++) scratch_put(J->tile[i], G2A_TILE_BYTES);
    free(J);
    free(own);
    return err;
}
#endif
