/* tritium_f32p.h: the fp32-activation GEMM for batches of tokens (P->x, no quantization).
 * A section of tritium_kernels.c, included by it after the driver (build.py renders it
 * inline into one translation unit); not a standalone header.
 *
 * Register-blocked outer products, written once with GCC/clang vector extensions (16 floats
 * per vector: one zmm on AVX-512, two ymm on AVX2, four q registers on NEON, SSE on the
 * portable build). A task is a panel of VW * NV output channels x a chunk of TRI_TOK_CHUNK
 * tokens: it decodes the panel's trits once into floats laid out k-major (wt[k][VW * NV],
 * value code - 1), then for each group of MR tokens keeps MR x NV accumulator vectors in
 * registers while k runs over the real K (no padding to whole packed blocks: K = 25 costs 25
 * steps), one weight vector load and one broadcast per token per step. K is walked in slices
 * of TRI_F32P_KC so that the slice of the panel stays in L1 while all the chunk's tokens pass
 * over it; partial sums wait in a per-task tile. The epilogue (scale, bias, and relu/relu6)
 * runs on vectors; a residual or another activation takes the scalar epi_apply. */

/* one vector of VW floats: a zmm on AVX-512, a ymm on AVX2 (wider generic vectors would be
 * split into more registers than AVX2 has: the micro-kernels spill) */
#if TRI_ISA_AVX512
#define VW 16
#else
#define VW 8
#endif
typedef float tri_v16 __attribute__((vector_size(VW * 4)));
typedef int32_t tri_v16i __attribute__((vector_size(VW * 4)));
typedef float tri_v16u __attribute__((vector_size(VW * 4), aligned(4)));   /* unaligned access */

#define TRI_F32P_KC 256
#define TRI_F32P_MAX_K 512 /* larger K keeps the decoded-tile path (tri_linear, conv2d) */

typedef struct {
    const Problem *P;
    int nv;            /* vectors of VW channels per panel: 1 (n <= VW) or 2 */
    int64_t npanel, nchunk;
    float *wt[TRI_MAX_THREADS];    /* per-thread scratch: decoded panel, k x VW * nv */
    float *acc[TRI_MAX_THREADS];   /* per-thread scratch: partial sums, chunk x VW * nv */
    uint8_t *codes[TRI_MAX_THREADS];
    _Atomic int err;
} F32PJob;

/* acc[u] (+)= sum over k in [k0, k1) of x[u][k] * wt[k] for MR tokens, NV vectors each. */
static inline __attribute__((always_inline)) void f32p_block(
    const float *wt, const float *x, int64_t ldx, int64_t k0, int64_t k1, float *acc,
    int64_t lda, const int MR, const int NV, int first) {
    tri_v16 a[8][2];
    for (int u = 0; u < MR; u++)
        for (int v = 0; v < NV; v++)
            a[u][v] = first ? (tri_v16){0} : *(const tri_v16 *)(acc + u * lda + VW * v);
    for (int64_t kk = k0; kk < k1; kk++) {
        const tri_v16 *w = (const tri_v16 *)(wt + kk * VW * NV);
        const tri_v16 w0 = w[0];
        const tri_v16 w1 = NV > 1 ? w[1] : w0;
        for (int u = 0; u < MR; u++) {
            const float xv = x[u * ldx + kk];
            a[u][0] += xv * w0;
            if (NV > 1) a[u][1] += xv * w1;
        }
    }
    for (int u = 0; u < MR; u++)
        for (int v = 0; v < NV; v++) *(tri_v16 *)(acc + u * lda + VW * v) = a[u][v];
}

#define TRI_F32P_MR1 8 /* tokens per micro-kernel with one vector of channels */
#define TRI_F32P_MR2 6 /* ... with two */

static void f32p_rows(const float *wt, const float *x, int64_t ldx, int64_t k0, int64_t k1,
                      float *acc, int64_t lda, int mr, int nv, int first) {
#define F32P_CASE(M, V) case M: f32p_block(wt, x, ldx, k0, k1, acc, lda, M, V, first); break;
    if (nv == 1) {
        switch (mr) {
            F32P_CASE(1, 1) F32P_CASE(2, 1) F32P_CASE(3, 1) F32P_CASE(4, 1)
            F32P_CASE(5, 1) F32P_CASE(6, 1) F32P_CASE(7, 1) F32P_CASE(8, 1)
        }
    } else {
        switch (mr) {
            F32P_CASE(1, 2) F32P_CASE(2, 2) F32P_CASE(3, 2) F32P_CASE(4, 2)
            F32P_CASE(5, 2) F32P_CASE(6, 2)
        }
    }
#undef F32P_CASE
}

/* out row of nc <= VW * nv channels from c0: scale, bias, relu/relu6 on vectors, or the
 * scalar epilogue for a residual or another activation. */
static void f32p_epilogue(const Problem *P, int64_t t, int64_t c0, int64_t nc, int nv,
                          const float *acc) {
    const Epi *e = &P->epi;
    float *dst = P->y + t * P->n + c0;
    if (e->residual || (e->act != TRI_ACT_NONE && e->act != TRI_ACT_RELU && e->act != TRI_ACT_RELU6)) {
        for (int64_t c = 0; c < nc; c++) dst[c] = epi_apply(e, P->n, t, c0 + c, acc[c]);
        return;
    }
    for (int v = 0; v < nv; v++) {
        const int64_t cv = c0 + VW * v, left = nc - VW * v;
        if (left <= 0) break;
        tri_v16 s, b = {0}, y = *(const tri_v16 *)(acc + VW * v);
        if (e->nscale == 1) {
            s = (tri_v16){0} + e->scale[0];
        } else if (left >= VW) {
            s = *(const tri_v16u *)(e->scale + cv);
        } else {
            s = (tri_v16){0};
            for (int64_t c = 0; c < left; c++) s[c] = e->scale[cv + c];
        }
        y *= s;
        if (e->bias) {
            if (left >= VW) {
                b = *(const tri_v16u *)(e->bias + cv);
            } else {
                for (int64_t c = 0; c < left; c++) b[c] = e->bias[cv + c];
            }
            y += b;
        }
        if (e->act != TRI_ACT_NONE) { /* v < 0 -> 0 (NaN stays), then the cap at 6 */
            y = (tri_v16)((tri_v16i)y & ~(tri_v16i)(y < 0.0f));
            if (e->act == TRI_ACT_RELU6) {
                const tri_v16i over = (tri_v16i)(y > 6.0f);
                y = (tri_v16)(((tri_v16i)y & ~over) | ((tri_v16i)((tri_v16){0} + 6.0f) & over));
            }
        }
        if (left >= VW) {
            *(tri_v16u *)(dst + VW * v) = y;
        } else {
            for (int64_t c = 0; c < left; c++) dst[VW * v + c] = y[c];
        }
    }
}

static void f32p_task(void *ctx, int64_t task, int tid) {
    F32PJob *J = ctx;
    const Problem *P = J->P;
    const int nv = J->nv, nr = VW * nv;
    const int64_t panel = task % J->npanel, ch = task / J->npanel;
    const int64_t c0 = panel * nr, nc = min64(nr, P->n - c0);
    const int64_t t0 = ch * TRI_TOK_CHUNK, t1 = min64(P->m, t0 + TRI_TOK_CHUNK);
    const int64_t k = P->k;
    if (!J->wt[tid]) J->wt[tid] = tri_alloc((size_t)(k * nr) * sizeof(float));
    if (!J->acc[tid]) J->acc[tid] = tri_alloc((size_t)(TRI_TOK_CHUNK * nr) * sizeof(float));
    if (!J->codes[tid]) J->codes[tid] = tri_alloc((size_t)P->kpad);
    float *wt = J->wt[tid], *acc = J->acc[tid];
    uint8_t *codes = J->codes[tid];
    if (!wt || !acc || !codes) {
        atomic_store(&J->err, 1);
        return;
    }
    for (int64_t r = 0; r < nr; r++) {
        if (r < nc) {
            decode_codes(P->fmt, P->w + (c0 + r) * P->row_bytes, P->nb, codes);
            for (int64_t kk = 0; kk < k; kk++) wt[kk * nr + r] = (float)codes[kk] - 1.0f;
        } else {
            for (int64_t kk = 0; kk < k; kk++) wt[kk * nr + r] = 0.0f;
        }
    }
    /* pull the chunk's tokens in at streaming speed first: the micro-kernel reads MR rows a
     * few bytes at a time, which the hardware prefetchers follow poorly */
    for (const float *p = P->x + t0 * k, *e = P->x + t1 * k; p < e; p += 16) __builtin_prefetch(p);
    const int mr = nv == 1 ? TRI_F32P_MR1 : TRI_F32P_MR2;
    for (int64_t k0 = 0; k0 < k; k0 += TRI_F32P_KC) {
        const int64_t k1 = min64(k, k0 + TRI_F32P_KC);
        for (int64_t t = t0; t < t1; t += mr) {
            const int rows = (int)min64(mr, t1 - t);
            f32p_rows(wt, P->x + t * k, k, k0, k1, acc + (t - t0) * nr, nr, rows, nv, k0 == 0);
        }
    }
    for (int64_t t = t0; t < t1; t++) f32p_epilogue(P, t, c0, nc, nv, acc + (t - t0) * nr);
}

/* Whether the panel GEMM takes this fp32 problem: tokens in P->x, K within its bound, and
 * more than 8 output channels (with fewer, most of a 16-lane panel is padding and the 4-row
 * tiles of the driver measured faster: LeNet-5's first convolution, 6 channels). */
static inline int f32p_fits(const Problem *P) {
    return (TRI_ISA_AVX512 || TRI_ISA_AVX2) && P->x != NULL && P->xq == NULL && P->k > 0
           && P->k <= TRI_F32P_MAX_K && P->n > 8;
}

static int run_f32p(const Problem *P, int nthreads) {
    if (nthreads > TRI_MAX_THREADS) nthreads = TRI_MAX_THREADS;
    if (nthreads < 1) nthreads = 1;
    F32PJob *J = calloc(1, sizeof(F32PJob));
    if (!J) return 1;
    J->P = P;
    J->nv = P->n <= VW ? 1 : 2;
    J->npanel = (P->n + VW * J->nv - 1) / (VW * J->nv);
    J->nchunk = (P->m + TRI_TOK_CHUNK - 1) / TRI_TOK_CHUNK;
    atomic_init(&J->err, 0);
    const double work = (double)P->m * (double)P->n * (double)P->k;
    pool_run(f32p_task, J, J->npanel * J->nchunk, team_for_work(work, nthreads));
    int err = atomic_load(&J->err);
    for (int i = 0; i < TRI_MAX_THREADS; i++) {
        free(J->wt[i]);
        free(J->acc[i]);
        free(J->codes[i]);
    }
    free(J);
    return err;
}
