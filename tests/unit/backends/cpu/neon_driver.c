/* Test driver for the cross-compiled kernels (tests/unit/backends/cpu/test_neon_cross.py).
 *
 * Linked statically with one rendered kernel specialization and run under qemu-user:
 *   neon_driver IN OUT
 * IN is a sequence of cases, each an int64 header (op, then the op's int64 parameters)
 * followed by its input arrays; OUT receives, per case, an int64 return code and the output
 * arrays. All values are little-endian and native-sized (int8, uint8, int32, float32).
 *
 *   op 0 INFO     -> rc = 1 when compiled with __ARM_FEATURE_DOTPROD; then 16 bytes of tri_isa()
 *   op 1 PACK     fmt rows k nthreads; int8 trits[rows*k]   -> rc; uint8 packed[rows*rb]
 *   op 2 UNPACK   fmt rows k nthreads; uint8 packed[rows*rb] -> rc; int8 trits[rows*k]
 *   op 3 LINEAR   fmt m k n nscale has_bias has_res act act_quant nthreads;
 *                 float x[m*k], uint8 w[n*rb], float scale[nscale], bias[n]?, res[m*n]?
 *                 -> rc; float y[m*n]
 *   op 4 GEMM_I8  fmt m k n nthreads; int8 xq[m*k], uint8 w[n*rb] -> rc; int32 y[m*n]
 *   op 5 QUANT    m k nthreads; float x[m*k] -> rc (0); int8 xq[m*k], float s[m]
 *   op 6 CONV     fmt b c h w o kh kw ph pw s groups nscale has_bias act pool ho wo nthreads,
 *                 then the 15 TriPoolGeom fields when pool; float x[b*c*h*w], uint8 w[o*rb]
 *                 (k = c/groups*kh*kw), float scale[nscale], bias[o]?
 *                 -> rc; float y[b*o*ho*wo] (dilation 1; ho wo: the pooled size when pool)
 *   op 7 POOL     planes, the 15 TriPoolGeom fields, nthreads; float x[planes*h*w]
 *                 -> rc; float y[planes*ho*wo]
 *   op 8 I8_GEMM  m k n nthreads; int8 xq[m*k], int8 w[n*k] (row-major; packed here with
 *                 tri_i8_pack) -> rc; int32 y[m*n]
 *   op 9 I8_LINEAR m k n has_bias nthreads; float x[m*k], int8 w[n*k], float ws[n], bias[n]?
 *                 -> rc; float y[m*n]
 * rb (bytes per packed row) is 32 * ceil(k / block), block = 128 (t2) or 160 (t1.6).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tritium_kernels.h"

static FILE *g_in, *g_out;

static void die(const char *what) {
    fprintf(stderr, "neon_driver: %s\n", what);
    exit(2);
}

static int64_t rd64(void) {
    int64_t v;
    if (fread(&v, sizeof v, 1, g_in) != 1) die("truncated input (parameter)");
    return v;
}

static void *rdarr(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) die("out of memory");
    if (bytes && fread(p, 1, bytes, g_in) != bytes) die("truncated input (array)");
    return p;
}

static void *mkarr(size_t bytes) {
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p) die("out of memory");
    return p;
}

static void wr64(int64_t v) {
    if (fwrite(&v, sizeof v, 1, g_out) != 1) die("write failed");
}

static void wrarr(const void *p, size_t bytes) {
    if (bytes && fwrite(p, 1, bytes, g_out) != bytes) die("write failed");
}

static int64_t row_bytes(int64_t fmt, int64_t k) {
    const int64_t be = fmt == TRI_FMT_T2 ? TRI_T2_BLOCK : TRI_T16_BLOCK;
    return (k + be - 1) / be * TRI_BLOCK_BYTES;
}

int main(int argc, char **argv) {
    if (argc != 3) die("usage: neon_driver IN OUT");
    g_in = fopen(argv[1], "rb");
    g_out = fopen(argv[2], "wb");
    if (!g_in || !g_out) die("cannot open the input or output file");
    int64_t op;
    while (fread(&op, sizeof op, 1, g_in) == 1) {
        if (op == 0) {
            char name[16] = {0};
            strncpy(name, tri_isa(), sizeof name - 1);
#if defined(__ARM_FEATURE_DOTPROD)
            wr64(1);
#else
            wr64(0);
#endif
            wrarr(name, sizeof name);
        } else if (op == 1) {
            int64_t fmt = rd64(), rows = rd64(), k = rd64(), nt = rd64(), rb = row_bytes(fmt, k);
            int8_t *src = rdarr((size_t)(rows * k));
            uint8_t *dst = mkarr((size_t)(rows * rb));
            wr64(tri_pack((int)fmt, src, rows, k, dst, rb, (int)nt));
            wrarr(dst, (size_t)(rows * rb));
            free(src); free(dst);
        } else if (op == 2) {
            int64_t fmt = rd64(), rows = rd64(), k = rd64(), nt = rd64(), rb = row_bytes(fmt, k);
            uint8_t *src = rdarr((size_t)(rows * rb));
            int8_t *dst = mkarr((size_t)(rows * k));
            wr64(tri_unpack((int)fmt, src, rows, k, rb, dst, (int)nt));
            wrarr(dst, (size_t)(rows * k));
            free(src); free(dst);
        } else if (op == 3) {
            int64_t fmt = rd64(), m = rd64(), k = rd64(), n = rd64(), nscale = rd64();
            int64_t has_bias = rd64(), has_res = rd64(), act = rd64(), act_quant = rd64(), nt = rd64();
            int64_t rb = row_bytes(fmt, k);
            float *x = rdarr((size_t)(m * k) * sizeof(float));
            uint8_t *w = rdarr((size_t)(n * rb));
            float *scale = rdarr((size_t)nscale * sizeof(float));
            float *bias = has_bias ? rdarr((size_t)n * sizeof(float)) : NULL;
            float *res = has_res ? rdarr((size_t)(m * n) * sizeof(float)) : NULL;
            float *y = mkarr((size_t)(m * n) * sizeof(float));
            /* gw NULL: no pre-built G2 weight layout (the NEON build has no G2 GEMM) */
            wr64(tri_linear(x, m, k, w, n, rb, (int)fmt, scale, nscale, bias, res, (int)act,
                            (int)act_quant, y, (int)nt, NULL));
            wrarr(y, (size_t)(m * n) * sizeof(float));
            free(x); free(w); free(scale); free(bias); free(res); free(y);
        } else if (op == 4) {
            int64_t fmt = rd64(), m = rd64(), k = rd64(), n = rd64(), nt = rd64(), rb = row_bytes(fmt, k);
            int8_t *xq = rdarr((size_t)(m * k));
            uint8_t *w = rdarr((size_t)(n * rb));
            int32_t *y = mkarr((size_t)(m * n) * sizeof(int32_t));
            wr64(tri_gemm_i8(xq, m, k, w, n, rb, (int)fmt, y, (int)nt));
            wrarr(y, (size_t)(m * n) * sizeof(int32_t));
            free(xq); free(w); free(y);
        } else if (op == 5) {
            int64_t m = rd64(), k = rd64(), nt = rd64();
            float *x = rdarr((size_t)(m * k) * sizeof(float));
            int8_t *xq = mkarr((size_t)(m * k));
            float *s = mkarr((size_t)m * sizeof(float));
            tri_quantize_rows(x, m, k, xq, s, (int)nt);
            wr64(0);
            wrarr(xq, (size_t)(m * k));
            wrarr(s, (size_t)m * sizeof(float));
            free(x); free(xq); free(s);
        } else if (op == 6) {
            int64_t fmt = rd64(), b = rd64(), c = rd64(), h = rd64(), w = rd64(), o = rd64();
            int64_t kh = rd64(), kw = rd64(), ph = rd64(), pw = rd64(), st = rd64();
            int64_t groups = rd64(), nscale = rd64(), has_bias = rd64(), act = rd64();
            int64_t pool = rd64(), ho = rd64(), wo = rd64(), nt = rd64();
            int64_t k = c / groups * kh * kw, rb = row_bytes(fmt, k);
            TriPoolGeom q = {0};
            if (pool) {
                int64_t *f = &q.kind;
                for (int i = 0; i < 15; i++) f[i] = rd64();
            }
            TriConvGeom g = {c, h, w, kh, kw, st, st, ph, pw, 1, 1, (h + 2 * ph - kh) / st + 1,
                             (w + 2 * pw - kw) / st + 1, groups};
            float *x = rdarr((size_t)(b * c * h * w) * sizeof(float));
            uint8_t *wt = rdarr((size_t)(o * rb));
            float *scale = rdarr((size_t)nscale * sizeof(float));
            float *bias = has_bias ? rdarr((size_t)o * sizeof(float)) : NULL;
            float *y = mkarr((size_t)(b * o * ho * wo) * sizeof(float));
            TriLinearPlan p = {wt, k, o, rb, scale, nscale, bias, (int32_t)fmt, 0};
            wr64(tri_conv2d_pool_planned(&p, &g, x, b, NULL, (int)act, pool ? &q : NULL, y,
                                         (int)nt, NULL));
            wrarr(y, (size_t)(b * o * ho * wo) * sizeof(float));
            free(x); free(wt); free(scale); free(bias); free(y);
        } else if (op == 7) {
            int64_t planes = rd64();
            TriPoolGeom q;
            int64_t *f = &q.kind;
            for (int i = 0; i < 15; i++) f[i] = rd64();
            int64_t nt = rd64();
            float *x = rdarr((size_t)(planes * q.h * q.w) * sizeof(float));
            float *y = mkarr((size_t)(planes * q.ho * q.wo) * sizeof(float));
            wr64(tri_pool2d(&q, x, planes, y, (int)nt));
            wrarr(y, (size_t)(planes * q.ho * q.wo) * sizeof(float));
            free(x); free(y);
        } else if (op == 8 || op == 9) {
            int64_t m = rd64(), k = rd64(), n = rd64(), has_bias = op == 9 ? rd64() : 0, nt = rd64();
            float *x = op == 9 ? rdarr((size_t)(m * k) * sizeof(float)) : NULL;
            int8_t *xq = op == 8 ? rdarr((size_t)(m * k)) : NULL;
            int8_t *w = rdarr((size_t)(n * k));
            float *ws = op == 9 ? rdarr((size_t)n * sizeof(float)) : NULL;
            float *bias = has_bias ? rdarr((size_t)n * sizeof(float)) : NULL;
            int8_t *wp = mkarr((size_t)tri_i8_bytes(n, k));
            int32_t *sums = mkarr((size_t)n * sizeof(int32_t));
            tri_i8_pack(w, n, k, wp, sums);
            void *y = mkarr((size_t)(m * n) * 4);
            wr64(op == 8 ? tri_i8_gemm(xq, m, k, wp, n, sums, y, (int)nt)
                         : tri_i8_linear(x, m, k, wp, n, ws, sums, bias, y, (int)nt));
            wrarr(y, (size_t)(m * n) * 4);
            free(x); free(xq); free(w); free(ws); free(bias); free(wp); free(sums); free(y);
        } else {
            die("unknown op");
        }
    }
    if (fclose(g_out) != 0) die("write failed");
    fclose(g_in);
    return 0;
}
