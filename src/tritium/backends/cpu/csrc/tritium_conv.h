/* Ternary conv2d (groups = 1) as one native call: the patches of the NCHW input are gathered
 * straight into the GEMM's activation rows (int8: gathered and quantized per patch in one pass,
 * as the im2col path did, so the result is the same bit for bit), the ternary GEMM runs with the
 * scale and bias epilogue, and the (B*L) x O result is written back as NCHW with the residual
 * and activation fused into that pass. No float im2col matrix, no transpose in torch. */

typedef struct {
    const float *x;
    const TriConvGeom *g;
    int64_t kk, ldx, rows, rows_per_task;
    int8_t *xq;    /* int8 mode: rows x ldx, zero padded */
    float *s;      /* int8 mode: per-patch scale */
    int32_t *sum;  /* int8 mode: per-patch sum of the codes */
    float *xf;     /* fp32 mode: rows x kk */
    _Atomic int oom;
} PatchJob;

/* The patch of output position r (image b, row oh, column ow) in F.unfold's order: channel,
 * then kernel row, then kernel column; zero where the window leaves the image. */
static inline void gather_patch(const float *x, const TriConvGeom *g, int64_t r, float *out) {
    const int64_t L = g->ho * g->wo, b = r / L, l = r % L, oh = l / g->wo, ow = l % g->wo;
    const float *xb = x + b * g->c * g->h * g->w;
    const int64_t ih0 = oh * g->sh - g->ph, iw0 = ow * g->sw - g->pw;
    for (int64_t c = 0; c < g->c; c++) {
        const float *xc = xb + c * g->h * g->w;
        for (int64_t i = 0; i < g->kh; i++) {
            const int64_t ih = ih0 + i * g->dh;
            float *o = out + (c * g->kh + i) * g->kw;
            if (ih < 0 || ih >= g->h) {
                memset(o, 0, (size_t)g->kw * sizeof(float));
                continue;
            }
            const float *row = xc + ih * g->w;
            if (g->dw == 1 && iw0 >= 0 && iw0 + g->kw <= g->w) {
                memcpy(o, row + iw0, (size_t)g->kw * sizeof(float));
                continue;
            }
            for (int64_t j = 0; j < g->kw; j++) {
                const int64_t iw = iw0 + j * g->dw;
                o[j] = iw >= 0 && iw < g->w ? row[iw] : 0.0f;
            }
        }
    }
}

static void patch_task(void *ctx, int64_t task, int tid) {
    PatchJob *J = ctx;
    (void)tid;
    const int64_t r0 = task * J->rows_per_task, r1 = min64(J->rows, r0 + J->rows_per_task);
    if (J->xf) {
        for (int64_t r = r0; r < r1; r++) gather_patch(J->x, J->g, r, J->xf + r * J->kk);
        return;
    }
    float *buf = tri_alloc((size_t)J->kk * sizeof(float));
    if (!buf) {
        atomic_store(&J->oom, 1);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        gather_patch(J->x, J->g, r, buf);
        quantize_row(buf, J->kk, J->xq + r * J->ldx, J->ldx, J->s + r, J->sum + r);
    }
    free(buf);
}

typedef struct {
    const float *t;        /* rows x n, row = b * L + l */
    const float *residual; /* NCHW or NULL */
    float *y;              /* NCHW */
    int64_t n, L, nb;
    int act;
} NchwJob;

/* One (image, channel) plane: y[b, o, :] = act(t[b * L + l, o] + residual[b, o, l]). */
static void nchw_task(void *ctx, int64_t task, int tid) {
    NchwJob *J = ctx;
    (void)tid;
    const int64_t b = task / J->n, o = task % J->n;
    const float *src = J->t + b * J->L * J->n + o;
    float *dst = J->y + task * J->L;
    const float *res = J->residual ? J->residual + task * J->L : NULL;
    for (int64_t l = 0; l < J->L; l++) {
        float v = src[l * J->n];
        if (res) v += res[l];
        dst[l] = act_apply(J->act, v);
    }
}

TRI_EXPORT int tri_conv2d_planned(const TriLinearPlan *p, const TriConvGeom *g, const float *x,
                                  int64_t batch, const float *residual, int act, float *y,
                                  int nthreads, const uint8_t *gw) {
    const int64_t L = g->ho * g->wo, m = batch * L, k = p->k, n = p->n;
    if (k != g->c * g->kh * g->kw) return 2;
    if (m == 0 || n == 0) return 0;
    Problem P;
    memset(&P, 0, sizeof P);
    P.m = m; P.k = k; P.n = n; P.row_bytes = p->row_bytes; P.fmt = p->fmt; P.w = p->w;
    P.nb = n_blocks(p->fmt, k);
    P.kpad = P.nb * blk_elems(p->fmt);
    P.ldx = P.kpad + 64;
    P.epi.scale = p->scale; P.epi.nscale = p->nscale; P.epi.bias = p->bias;
    /* without a residual the activation belongs to the epilogue; with one, to the NCHW pass */
    P.epi.act = residual ? TRI_ACT_NONE : act;
    float *t = tri_alloc((size_t)(m * n) * sizeof(float));
    PatchJob J = {.x = x, .g = g, .kk = k, .ldx = P.ldx, .rows = m};
    atomic_init(&J.oom, 0);
    int err = 1;
    if (!t) return 1;
    P.y = t;
    J.rows_per_task = rows_per_task(m, k, nthreads);
    const int64_t tasks = (m + J.rows_per_task - 1) / J.rows_per_task;
    const int gather_threads = m * k < 32768 ? 1 : nthreads;
    if (p->act_quant) {
        J.xq = tri_alloc((size_t)(m * P.ldx));
        J.s = tri_alloc((size_t)m * sizeof(float));
        J.sum = tri_alloc((size_t)m * sizeof(int32_t));
        if (J.xq && J.s && J.sum) {
            pool_run(patch_task, &J, tasks, gather_threads);
            if (!atomic_load(&J.oom)) {
                P.xq = J.xq; P.sx = J.s; P.sumx = J.sum;
                err = TRI_HAVE_G2 && m >= TRI_GEMM_MIN_M ? run_g2(&P, gw, nthreads)
                                                         : run_problem(&P, nthreads);
            }
        }
        free(J.xq); free(J.s); free(J.sum);
    } else {
        J.xf = tri_alloc((size_t)(m * k) * sizeof(float));
        if (J.xf) {
            pool_run(patch_task, &J, tasks, gather_threads);
            P.x = J.xf;
            err = f32p_fits(&P) ? run_f32p(&P, nthreads) : run_problem(&P, nthreads);
        }
        free(J.xf);
    }
    if (!err) {
        NchwJob N = {.t = t, .residual = residual, .y = y, .n = n, .L = L, .nb = batch,
                     .act = residual ? act : TRI_ACT_NONE};
        pool_run(nchw_task, &N, batch * n, m * n < 65536 ? 1 : nthreads);
    }
    free(t);
    return err;
}
