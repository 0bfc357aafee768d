/* Max and average pooling on NCHW planes (tri_pool2d), alone or on a conv's output planes
 * while they are in cache (the flat conv's, tritium_conv.h). */

/* ---- pooling on NCHW planes, as torch computes it ----------------------------------------
 * The same window walk, comparisons and sums as ATen's CPU max_pool2d / avg_pool2d kernels
 * for contiguous NCHW input, so the results are the same bit for bit: max starts at -inf and
 * takes a value when it is greater or NaN (the last NaN of the window wins), as selects the
 * compiler vectorizes (a branch on random data mispredicts half the time); avg sums the
 * window row by row and divides by the divisor once. */
#define TRI_POOL_STAGE 2048 /* floats of the 2x2 max pool's staging rows (on the stack) */

/* (v > m || isnan(v)) ? v : m per lane: the max pool's step. Picking "the last NaN, else the
 * first of the largest" is associative, so a window's values may be combined pairwise:
 * pick(pick(d, c), pick(b, a)) is the chain pick(d, pick(c, pick(b, a))). */
static inline tri_v16 vpick(tri_v16 v, tri_v16 m) {
    const tri_v16i t = (v > m) | (v != v);
    return (tri_v16)(((tri_v16i)v & t) | ((tri_v16i)m & ~t));
}

/* 2x2 windows, stride 2, no padding: for output row oh, lane t of one vector combines input
 * columns t and t + 1 of rows 2 oh and 2 oh + 1 (the even lanes are the windows); the rows go
 * to `stage` at a stride of 2 wo and one strided pass keeps the even lanes. Reads up to VW
 * floats past the plane (the caller's slack). */
static void max_pool_2x2(const float *in, int64_t W, int64_t ho, int64_t wo, float *stage,
                         float *out) {
    for (int64_t oh = 0; oh < ho; oh++) {
        const float *r0 = in + 2 * oh * W, *r1 = r0 + W;
        float *st = stage + oh * 2 * wo;
        for (int64_t t = 0; t < 2 * wo; t += VW) {
            const tri_v16 a = *(const tri_v16u *)(r0 + t), b = *(const tri_v16u *)(r0 + t + 1);
            const tri_v16 c = *(const tri_v16u *)(r1 + t), d = *(const tri_v16u *)(r1 + t + 1);
            *(tri_v16u *)(st + t) = vpick(vpick(d, c), vpick(b, a));
        }
    }
    for (int64_t r = 0; r < ho * wo; r++) out[r] = stage[2 * r];
}

/* `slack`: VW floats after the plane may be read */
static void pool_plane(const TriPoolGeom *q, const float *in, float *out, int slack) {
    const int64_t H = q->h, W = q->w;
    if (q->kind == TRI_POOL_MAX) {
        if (q->kh == 2 && q->kw == 2 && q->sh == 2 && q->sw == 2 && q->ph == 0 && q->pw == 0
            && q->dh == 1 && q->dw == 1 && 2 * q->ho <= H && 2 * q->wo <= W) {
            if (slack && 2 * q->ho * q->wo + VW <= TRI_POOL_STAGE) {
                float stage[TRI_POOL_STAGE];
                max_pool_2x2(in, W, q->ho, q->wo, stage, out);
                return;
            }
            for (int64_t oh = 0; oh < q->ho; oh++) {   /* whole windows, no bounds */
                const float *r0 = in + 2 * oh * W, *r1 = r0 + W;
                float *o = out + oh * q->wo;
                for (int64_t ow = 0; ow < q->wo; ow++) {
                    const float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow],
                                d = r1[2 * ow + 1];
                    float m = a;   /* what -inf then a gives, -inf included */
                    m = ((b > m) | (b != b)) ? b : m;
                    m = ((c > m) | (c != c)) ? c : m;
                    m = ((d > m) | (d != d)) ? d : m;
                    o[ow] = m;
                }
            }
            return;
        }
        for (int64_t oh = 0; oh < q->ho; oh++) {
            for (int64_t ow = 0; ow < q->wo; ow++) {
                int64_t ih0 = oh * q->sh - q->ph, iw0 = ow * q->sw - q->pw;
                const int64_t ih1 = min64(ih0 + (q->kh - 1) * q->dh + 1, H);
                const int64_t iw1 = min64(iw0 + (q->kw - 1) * q->dw + 1, W);
                while (ih0 < 0) ih0 += q->dh;
                while (iw0 < 0) iw0 += q->dw;
                float m = -INFINITY;
                for (int64_t ih = ih0; ih < ih1; ih += q->dh)
                    for (int64_t iw = iw0; iw < iw1; iw += q->dw) {
                        const float v = in[ih * W + iw];
                        m = ((v > m) | (v != v)) ? v : m;   /* no branch to mispredict */
                    }
                out[oh * q->wo + ow] = m;
            }
        }
        return;
    }
    for (int64_t oh = 0; oh < q->ho; oh++) {
        for (int64_t ow = 0; ow < q->wo; ow++) {
            int64_t ih0 = oh * q->sh - q->ph, iw0 = ow * q->sw - q->pw;
            int64_t ih1 = min64(ih0 + q->kh, H + q->ph), iw1 = min64(iw0 + q->kw, W + q->pw);
            const int64_t pool_size = (ih1 - ih0) * (iw1 - iw0);
            ih0 = ih0 < 0 ? 0 : ih0;
            iw0 = iw0 < 0 ? 0 : iw0;
            ih1 = min64(ih1, H);
            iw1 = min64(iw1, W);
            if (ih0 >= ih1 || iw0 >= iw1) {
                out[oh * q->wo + ow] = 0.0f;
                continue;
            }
            const int64_t div = q->divisor > 0 ? q->divisor
                                : q->count_include_pad ? pool_size : (ih1 - ih0) * (iw1 - iw0);
            float sum = 0.0f;
            for (int64_t ih = ih0; ih < ih1; ih++)
                for (int64_t iw = iw0; iw < iw1; iw++) sum += in[ih * W + iw];
            out[oh * q->wo + ow] = sum / (float)div;
        }
    }
}

typedef struct {
    const TriPoolGeom *q;
    const float *x;
    float *y;
    int64_t planes, per_task;
} PoolJob;

static void pool_task(void *ctx, int64_t task, int tid) {
    PoolJob *J = ctx;
    (void)tid;
    const int64_t in = J->q->h * J->q->w, out = J->q->ho * J->q->wo;
    const int64_t p1 = min64(J->planes, (task + 1) * J->per_task);
    for (int64_t p = task * J->per_task; p < p1; p++)   /* the next plane is the slack */
        pool_plane(J->q, J->x + p * in, J->y + p * out, p + 1 < J->planes);
}

static int pool_geom_ok(const TriPoolGeom *q) {
    return q->kind >= TRI_POOL_MAX && q->kind <= TRI_POOL_AVG && q->h > 0 && q->w > 0
           && q->kh > 0 && q->kw > 0 && q->sh > 0 && q->sw > 0 && q->ph >= 0 && q->pw >= 0
           && q->dh > 0 && q->dw > 0 && q->ho > 0 && q->wo > 0;
}

static void pool_planes(const TriPoolGeom *q, const float *x, int64_t planes, float *y,
                        int nthreads) {
    const int64_t in = q->h * q->w + q->ho * q->wo * q->kh * q->kw;   /* work per plane */
    PoolJob J = {.q = q, .x = x, .y = y, .planes = planes};
    J.per_task = (16384 + in - 1) / in;
    const int64_t tasks = (planes + J.per_task - 1) / J.per_task;
    pool_run(pool_task, &J, tasks, team_for_work((double)planes * (double)in, nthreads));
}

TRI_EXPORT int tri_pool2d(const TriPoolGeom *q, const float *x, int64_t planes, float *y,
                          int nthreads) {
    if (!pool_geom_ok(q)) return 2;
    if (planes > 0) pool_planes(q, x, planes, y, nthreads);
    return 0;
}
