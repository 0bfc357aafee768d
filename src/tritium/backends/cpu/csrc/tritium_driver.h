/* tritium_driver.h: the GEMV / decoded-tile driver: tasks of 4 weight rows x a chunk of tokens.
 * A section of tritium_kernels.c, included by it at this point (build.py renders it
 * inline into one translation unit); not a standalone header. */

/* ------------------------------------------------------------------------------------ */
/* Driver: tasks = (tile of 4 rows) x (chunk of tokens), static schedule                 */
/* ------------------------------------------------------------------------------------ */

typedef struct {
    int64_t m, k, n, row_bytes, kpad, nb;
    int64_t ldx; /* row stride of xq and of the code/float scratch rows: kpad + 64 (no 4K
                  * aliasing); of xq for the G2 GEMM: g2_xq_stride */
    int fmt;
    const uint8_t *w;
    const float *x;      /* fp32 mode */
    const float *xpad;   /* fp32 mode, direct GEMV: x rows zero padded to stride ldx */
    int xperm;           /* xpad permuted by tri_f32_xperm_copy (the AVX2 fp32 GEMV) */
    const int8_t *xq;    /* int8 mode: m rows of ldx, zero padded past k */
    const float *sx;     /* int8 mode: per-token scale (NULL for raw output) */
    const int32_t *sumx; /* int8 mode: per-token sum of xq */
    float *y;
    int32_t *yi; /* raw int32 output (tri_gemm_i8) */
    Epi epi;
} Problem;

/* The row stride of the quantized activations of the G2 GEMM (both ISAs), which reads a row
 * only up to k rounded up to 4 (zeros past k): the per-token kernels' kpad + 64 made the
 * quantizer zero 256 bytes a row after the 64 values of a 64-wide layer (a sixth of the
 * digits MLP's time at a batch of 64). 64 bytes more when the stride is a multiple of 1 KB
 * (rows 4 KB apart share cache sets). */
static inline int64_t g2_xq_stride(int64_t k) {
    const int64_t s = (k + 3) / 4 * 4;
    return s % 1024 == 0 ? s + 64 : s;
}

typedef struct {
    const Problem *P;
    int64_t nchunk, tiles_per_task, ntile;
    int direct;
    const uint8_t *zero_row;
    uint8_t *codes[TRI_MAX_THREADS]; /* per-thread scratch, allocated on first use */
    float *wf[TRI_MAX_THREADS];
    _Atomic int err;
} ProblemJob;

/* Token tt's outputs of rows r0..r0+nr-1 (nr <= 4) from their int32 sums over the codes:
 * the sum of trit products is acc - sumx (codes are trits + 1); the raw int32 output, or
 * epi_math with the epilogue's fields read once for the rows (epi_apply reads them for every
 * value: a 4096-row GEMV at batch 1 spent a tenth of its time re-reading them). */
static inline void store_i8_rows(const Problem *P, int64_t tt, int64_t r0, int64_t nr, const int32_t *acc) {
    const int64_t n = P->n;
    const int32_t sumx = P->sumx[tt];
    if (P->yi) {
        for (int64_t r = 0; r < nr; r++) P->yi[tt * n + r0 + r] = acc[r] - sumx;
        return;
    }
    const Epi *e = &P->epi;
    const float sx = P->sx[tt];
    const float *scale = e->nscale == 1 ? NULL : e->scale + r0, scale0 = e->scale[0];
    const float *bias = e->bias ? e->bias + r0 : NULL;
    const float *res = e->residual ? e->residual + tt * n + r0 : NULL;
    const int act = e->act;
    float *y = P->y + tt * n + r0;
    if (!bias && !res && act == TRI_ACT_NONE) { /* the common case, its branches folded away */
        for (int64_t r = 0; r < nr; r++)
            y[r] = epi_math((float)(acc[r] - sumx) * sx, scale ? scale[r] : scale0, NULL, NULL, TRI_ACT_NONE);
        return;
    }
    for (int64_t r = 0; r < nr; r++)
        y[r] = epi_math((float)(acc[r] - sumx) * sx, scale ? scale[r] : scale0, bias ? bias + r : NULL,
                        res ? res + r : NULL, act);
}

/* The direct int8 GEMV's tiles tile0..tile1-1 of token chunk ch, each straight from the
 * packed rows: one loop without run_tile's per-tile setup (a 4096x256 GEMV at batch 1 spent
 * about 20 ns a tile there) */
static void run_tiles_direct_i8(const ProblemJob *J, int64_t tile0, int64_t tile1, int64_t ch) {
    const Problem *P = J->P;
    const int64_t ldx = P->ldx, n = P->n, pf = TRI_GEMV_PF_TILES * 4 * P->row_bytes;
    const int64_t t0 = ch * TRI_TOK_CHUNK, t1 = min64(P->m, t0 + TRI_TOK_CHUNK);
    for (int64_t tile = tile0; tile < tile1; tile++) {
        const int64_t r0 = tile * 4, nr = min64(4, n - r0);
        const uint8_t *wr[4];
        for (int r = 0; r < 4; r++) wr[r] = r < nr ? P->w + (r0 + r) * P->row_bytes : J->zero_row;
        for (int64_t t = t0; t < t1; t++) {
            int32_t acc[4];
            gemv_direct4(P->fmt, wr, P->xq + t * ldx, P->nb, acc, pf);
            store_i8_rows(P, t, r0, nr, acc);
        }
    }
}

/* One output tile: rows r0..r0+3 (padded with a zero row) x tokens t0..t1-1; not the direct
 * int8 GEMV's (run_tiles_direct_i8). */
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
        for (int r = 0; r < 4; r++) {
            decode_codes(P->fmt, wr[r], P->nb, codes + r * ldx);
            cr[r] = codes + r * ldx;
        }
        for (int64_t t = t0; t < t1;) {
            int32_t acc[16];
            int nt = 1;
            if (TRI_HAVE_4X4 && t + 2 < t1) {
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
            for (int u = 0; u < nt; u++) store_i8_rows(P, t + u, r0, nr, acc + 4 * u);
            t += nt;
        }
    } else if (J->direct) {
        for (int64_t t = t0; t < t1; t++) {
            float acc[4];
            f32_gemv_direct4(P->fmt, wr, P->xpad + t * ldx, P->nb, acc, TRI_GEMV_PF_TILES * 4 * P->row_bytes,
                             P->xperm);
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
    if (J->direct && J->P->xq != NULL) {
        run_tiles_direct_i8(J, g * J->tiles_per_task, tile1, ch);
        return;
    }
    for (int64_t tile = g * J->tiles_per_task; tile < tile1; tile++) run_tile(J, tile, ch, tid);
}

/* Set up J (zeroed here) for P (its tasks: *ntasks; the work its team is sized by: *work);
 * 0, or 1 when out of memory (nothing to release). A packed row of zero trits pads the last
 * tile of 4 rows only when n is not a multiple of 4, and run_problem keeps J on its stack: a
 * 64x64 layer's native call at batch 1 took 1.45 us with both allocated (and freed) on every
 * call, 1.07 us without (Zen 3). */
static int problem_job_init(ProblemJob *J, const Problem *P, int nthreads, int64_t *ntasks,
                            double *work) {
    if (nthreads > TRI_MAX_THREADS) nthreads = TRI_MAX_THREADS;
    if (nthreads < 1) nthreads = 1;
    memset(J, 0, sizeof *J);
    if (P->n % 4) {
        uint8_t *zero_row = tri_alloc((size_t)P->row_bytes);
        if (!zero_row) return 1;
        /* a packed row of zero trits: code 1 everywhere */
        memset(zero_row, P->fmt == TRI_FMT_T2 ? 0x55 : 121, (size_t)P->row_bytes);
        J->zero_row = zero_row;
    }
    J->P = P;
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
    *ntasks = groups * J->nchunk;
    *work = (double)P->m * (double)P->n * (double)P->kpad * (P->xq != NULL ? TRI_INT8_WORK : 1.0);
    return 0;
}

/* J's error flag, after freeing what its tasks allocated. */
static int problem_job_release(ProblemJob *J) {
    int err = atomic_load(&J->err);
    for (int i = 0; i < TRI_MAX_THREADS; i++) {
        if (J->codes[i]) free(J->codes[i]);
        if (J->wf[i]) free(J->wf[i]);
    }
    free((void *)J->zero_row);
    return err;
}

/* A job on the heap (a decoder block's three, tritium_lmblock.h), or NULL when its buffers could
 * not be allocated; problem_job_free returns its error status. */
static ProblemJob *problem_job_new(const Problem *P, int nthreads, int64_t *ntasks, double *work) {
    ProblemJob *J = malloc(sizeof(ProblemJob));
    if (J && problem_job_init(J, P, nthreads, ntasks, work)) {
        free(J);
        return NULL;
    }
    return J;
}

static int problem_job_free(ProblemJob *J) {
    int err = problem_job_release(J);
    free(J);
    return err;
}

static int run_problem(const Problem *P, int nthreads) {
    if (nthreads > TRI_MAX_THREADS) nthreads = TRI_MAX_THREADS;
    if (nthreads < 1) nthreads = 1;
    int64_t ntasks;
    double work;
    ProblemJob J; /* on the stack: pool_run returns when every task has */
    if (problem_job_init(&J, P, nthreads, &ntasks, &work)) return 1;
    pool_run(problem_task, &J, ntasks, team_for_work(work, nthreads));
    return problem_job_release(&J);
}

