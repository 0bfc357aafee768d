/* tritium_scalar.h: the portable C micro-kernels (TRI_ISA_SCALAR).
 * A section of tritium_kernels.c, included by it at this point (build.py renders it
 * inline into one translation unit); not a standalone header. */

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

static void gemv_direct4(int fmt, const uint8_t *const *w, const int8_t *x, int64_t nb, int32_t *o,
                         int64_t pf) {
    (void)fmt; (void)w; (void)x; (void)nb; (void)o; (void)pf; /* never called: TRI_HAVE_DIRECT == 0 */
}

static void f32_gemv_direct4(int fmt, const uint8_t *const *w, const float *x, int64_t nb, float *o,
                             int64_t pf, int xperm) {
    (void)fmt; (void)w; (void)x; (void)nb; (void)o; (void)pf; (void)xperm; /* never called: TRI_HAVE_DIRECT == 0 */
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
