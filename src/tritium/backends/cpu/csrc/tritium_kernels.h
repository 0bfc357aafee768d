/* Tritium CPU kernels: shared constants and the exported C ABI.
 *
 * build.py prepends a prelude that defines the specialization macros:
 *   TRI_ISA_AVX512, TRI_ISA_AVX2, TRI_ISA_NEON, TRI_ISA_SCALAR  (exactly one is 1)
 *   TRI_ROW_TILE      rows of W handled together (fixed at 4 by the micro-kernels)
 *   TRI_TOK_CHUNK     tokens per parallel task
 *   TRI_GEMV_MAX_M    batches up to this size use the direct-decode GEMV
 *   TRI_GEMM_MIN_M    int8 batches from this size use the G2 GEMM (AVX-512 only)
 *   TRI_GEMM_MR, TRI_GEMM_NRV  G2 micro-kernel: tokens x zmm (16 channels) of accumulators
 *   TRI_GEMM_MC       G2 tokens per parallel task
 *   TRI_GEMM_KC       G2 K block in elements (0: whole rows)
 *   TRI_GEMM_PF       G2 weight prefetch distance in bytes (0: none)
 *   TRI_GEMV_PF_TILES direct GEMV weight prefetch distance in tiles of 4 rows (a constant
 *                     here: 1 and 2 measured alike, 4 slower; 0 prefetches the row being read)
 *   TRI_GEMM_UNPACK   G2: expand a weight block once per task into an L1/L2 buffer (1) or
 *                     in registers at every use (0)
 *   TRI_POOL_OPENMP   1: parallel regions on the OpenMP runtime (built with -fopenmp);
 *                     0: the library's own pthread pool
 * The byte layouts are described in docs/formats.md (format version 1).
 */
#ifndef TRITIUM_KERNELS_H
#define TRITIUM_KERNELS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#ifndef TRI_POOL_OPENMP
#define TRI_POOL_OPENMP 0
#endif

#include <stdint.h>

#ifndef TRI_GEMM_MIN_M
#define TRI_GEMM_MIN_M 2
#endif
#ifndef TRI_GEMM_MR
#define TRI_GEMM_MR 8
#endif
#ifndef TRI_GEMM_NRV
#define TRI_GEMM_NRV 3
#endif
#ifndef TRI_GEMM_MC
#define TRI_GEMM_MC 256
#endif
#ifndef TRI_GEMM_KC
#define TRI_GEMM_KC 0
#endif
#ifndef TRI_GEMM_UNPACK
#define TRI_GEMM_UNPACK 1
#endif
#ifndef TRI_GEMV_PF_TILES
#define TRI_GEMV_PF_TILES 1
#endif
#ifndef TRI_GEMM_PF
#define TRI_GEMM_PF 512
#endif

#define TRI_FMT_T2 0
#define TRI_FMT_T16 1

/* t2: 128 trits per 32-byte block; t1.6: 160 trits per 32-byte block. */
#define TRI_T2_BLOCK 128
#define TRI_T16_BLOCK 160
#define TRI_BLOCK_BYTES 32

#define TRI_ACT_NONE 0
#define TRI_ACT_RELU 1
#define TRI_ACT_RELU6 2
#define TRI_ACT_GELU 3
#define TRI_ACT_SILU 4
#define TRI_ACT_SIGMOID 5
#define TRI_ACT_TANH 6

#define TRI_EXPORT __attribute__((visibility("default")))

/* Returns a string naming the compiled ISA path ("avx2", "scalar", ...). */
TRI_EXPORT const char *tri_isa(void);
TRI_EXPORT int tri_abi_version(void);

/* The thread pool this build parallelizes with: "openmp" or "pthread". */
TRI_EXPORT const char *tri_pool(void);

/* The file of the OpenMP runtime the library is bound to ("" for the pthread pool). */
TRI_EXPORT const char *tri_omp_library(void);

/* The pool's team-size control (tritium_pool.h): adaptive (1) or always the requested team
 * (0), stderr reports of back-offs (debug); -1 keeps a setting. Clears the counters. */
TRI_EXPORT void tri_pool_configure(int adaptive, int debug);

/* The pool's counters (order in tritium_pool.h); returns how many there are. */
TRI_EXPORT int tri_pool_stats(int64_t *out, int n);

/* Diagnostics: the thread count a call asking for nthreads runs on (nested: called from each
 * thread of an enclosing 2-thread OpenMP region); -1 if the pool misbehaved. */
TRI_EXPORT int tri_pool_threads(int nthreads, int nested);

/* Diagnostics: the team of a call whose workers stop for delay_us after claiming a task, as
 * a worker the OS does not schedule would (tests of the back-off); -1 if a task was lost. */
TRI_EXPORT int tri_pool_stall_probe(int nthreads, int delay_us);

/* Pack int8 trits (rows x k, row-major, contiguous) into dst (rows x row_bytes).
 * Returns -1 on success, else the flat index r*k+c of the first invalid value. */
TRI_EXPORT int64_t tri_pack(int fmt, const int8_t *src, int64_t rows, int64_t k, uint8_t *dst,
                            int64_t row_bytes, int nthreads);

/* The same for float32 input (valid values are exactly -1.0, 0.0, 1.0; -0.0 counts as 0).
 * Returns -1, the flat index of the first invalid value, or -2 on allocation failure. */
TRI_EXPORT int64_t tri_pack_f32(int fmt, const float *src, int64_t rows, int64_t k, uint8_t *dst,
                                int64_t row_bytes, int nthreads);

/* Unpack (dst != NULL) or only validate (dst == NULL) packed rows.
 * Returns -1 on success, else the flat byte index r*row_bytes+b of the first invalid byte
 * (t2: a code 3, or a non-zero padding code; t1.6: a byte > 242, or non-zero padding). */
TRI_EXPORT int64_t tri_unpack(int fmt, const uint8_t *src, int64_t rows, int64_t k,
                              int64_t row_bytes, int8_t *dst, int nthreads);

/* y[m, n] = act((x @ W^T) * scale + bias + residual) with W the packed trits.
 * act_quant 0: fp32 activations; 1: per-token int8 absmax quantization (exact int32 GEMM).
 * nscale is 1 (per tensor) or n (per channel); bias/residual may be NULL.
 * gw: the G2 layout of W (tri_g2_pack) for the int8 GEMM, or NULL (re-laid out per call
 * when the G2 GEMM runs). Returns 0 on success, 1 on allocation failure. */
TRI_EXPORT int tri_linear(const float *x, int64_t m, int64_t k, const uint8_t *w, int64_t n,
                          int64_t row_bytes, int fmt, const float *scale, int64_t nscale,
                          const float *bias, const float *residual, int act, int act_quant,
                          float *y, int nthreads, const uint8_t *gw);

/* What a frozen layer's calls of tri_linear share: built once, passed by pointer, so that a
 * call from Python converts 8 arguments instead of 16 (each costs ~0.15 us in ctypes). */
typedef struct {
    const uint8_t *w;
    int64_t k, n, row_bytes;
    const float *scale;
    int64_t nscale;
    const float *bias;
    int32_t fmt, act_quant;
} TriLinearPlan;

/* tri_linear with the layer's constant arguments taken from *p. */
TRI_EXPORT int tri_linear_planned(const TriLinearPlan *p, const float *x, int64_t m,
                                  const float *residual, int act, float *y, int nthreads,
                                  const uint8_t *gw);

/* A chain of frozen linear layers run one after the other in one call: layer i reads layer
 * i-1's output (layer 0 reads x), applies acts[i] in its epilogue; the last writes y. The
 * layers' k and n must chain (layers[i].k == layers[i-1].n) and max_n must be at least every
 * n but the last's. */
typedef struct {
    int64_t nlayers;
    const TriLinearPlan *layers;
    const int32_t *acts;
    int64_t max_n;
    /* NULL, or per layer a thread cap (0: none): layer i runs on min(cap, nthreads) threads
     * (a tuned config's cap applies to its own layer in a fused chain) */
    const int32_t *caps;
} TriChainPlan;

/* y[m, n_last] = the chain applied to x[m, k_0]; gws: NULL or one G2 layout (or NULL) per
 * layer. Returns 0, 1 on allocation failure, 2 for an empty chain. */
TRI_EXPORT int tri_chain_planned(const TriChainPlan *c, const float *x, int64_t m, float *y,
                                 int nthreads, const uint8_t *const *gws);

/* The geometry of a conv2d: input channels, height and width, kernel, stride, padding,
 * dilation, the output size and the groups (input and output channels split into `groups`
 * independent convs; the weight is O x C/groups*kh*kw). */
typedef struct {
    int64_t c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, groups;
} TriConvGeom;

/* y[b, o, oh, ow] = act(conv2d(x, W) * scale + bias + residual), NCHW in and out, with the
 * layer's packed weight (O x C/groups*kh*kw) and constants in *p; int8 mode quantizes each
 * patch on its own (as tri_linear quantizes a token); int8_image mode (act_quant 2) each
 * image once (tritium_conv8.h). Returns 0, 1 on allocation failure, 2 when the geometry does
 * not match the weight, 3 for a grouped conv with int8 activations (only the fp32 flat conv
 * takes groups). gw: with int8 activations the G2 layout or NULL;
 * with fp32 activations the panel layout of tri_conv_panel_pack or NULL (then the implicit
 * GEMM for small planes is not used). */
TRI_EXPORT int tri_conv2d_planned(const TriLinearPlan *p, const TriConvGeom *g, const float *x,
                                  int64_t batch, const float *residual, int act, float *y,
                                  int nthreads, const uint8_t *gw);

/* A 2-D pooling window on NCHW planes, as torch's max_pool2d / avg_pool2d compute it: kind
 * TRI_POOL_MAX (padding counts as -inf, dilation dh/dw; NaN wins) or TRI_POOL_AVG (the sum in
 * window order divided by the divisor: divisor if > 0, else the window clipped to the padded
 * input when count_include_pad, else the window clipped to the input; no dilation). h, w: the
 * input plane; ho, wo: the output plane (ceil_mode resolved by the caller). */
#define TRI_POOL_MAX 0
#define TRI_POOL_AVG 1
typedef struct {
    int64_t kind, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, count_include_pad, divisor;
} TriPoolGeom;

/* tri_conv2d_planned followed by the pooling *q on each output plane (q->h, q->w must be the
 * conv's ho, wo); y is batch x n x q->ho x q->wo. q NULL: tri_conv2d_planned. The values
 * pooled are exactly the ones tri_conv2d_planned writes. Returns as tri_conv2d_planned, and 2
 * when q does not fit the conv's output. */
TRI_EXPORT int tri_conv2d_pool_planned(const TriLinearPlan *p, const TriConvGeom *g,
                                       const float *x, int64_t batch, const float *residual,
                                       int act, const TriPoolGeom *q, float *y, int nthreads,
                                       const uint8_t *gw);

/* A full-precision conv2d as the flat conv: the float weights w (n x C / groups * kh * kw, a
 * conv weight's layout), per output channel y = act(conv * scale + bias (+ residual)) (scale
 * NULL: 1; a folded batch norm's factor and shift), pooled by q when not NULL (q->h, q->w the
 * conv's ho, wo). Returns 0, 1 out of memory, 2 a geometry that does not fit, 3 a shape the
 * flat conv does not take (the caller's own conv runs). C ABI 11. */
TRI_EXPORT int tri_conv2d_f32(const float *w, const float *scale, const float *bias,
                              int64_t n, const TriConvGeom *g, const float *x, int64_t batch,
                              const float *residual, int act, const TriPoolGeom *q, float *y,
                              int nthreads);

/* The fp32 conv's panel layout of p's weight (int8 trits, k-major, in panels of output
 * channels): its size in bytes when tri_conv2d_planned would use it for geometry g, else 0;
 * and the packing (returns 1 if out of memory). C ABI 9. */
TRI_EXPORT int64_t tri_conv_panel_bytes(const TriLinearPlan *p, const TriConvGeom *g);
TRI_EXPORT int tri_conv_panel_pack(const TriLinearPlan *p, int8_t *out);

/* act_quant TRI_AQ_IMAGE (2, "int8_image"; conv only): each image quantized once with one
 * absmax scale, an exact int32 implicit GEMM (tritium_conv8.h). Its weight layout for geometry
 * g (tri_conv2d_planned's gw in that mode): the size in bytes (0 when the conv does not take
 * it: groups > 1) and the packing (returns 1 if out of memory, 2 for such a geometry). */
TRI_EXPORT int64_t tri_conv8_bytes(const TriLinearPlan *p, const TriConvGeom *g);
TRI_EXPORT int tri_conv8_pack(const TriLinearPlan *p, const TriConvGeom *g, int8_t *out);

/* y[plane] = pool(x[plane]) for `planes` contiguous planes of q->h x q->w floats (y: planes x
 * q->ho x q->wo). Returns 0, or 2 for a geometry without output. */
TRI_EXPORT int tri_pool2d(const TriPoolGeom *q, const float *x, int64_t planes, float *y,
                          int nthreads);

/* Bytes of the G2 layout of an n x k weight (0 when this build has no G2 GEMM). */
TRI_EXPORT int64_t tri_g2_bytes(int fmt, int64_t n, int64_t k);

/* Re-lay packed rows out as G2 panels (see the .c file). Returns 0, or 1 on allocation failure. */
TRI_EXPORT int tri_g2_pack(int fmt, const uint8_t *w, int64_t n, int64_t k, int64_t row_bytes,
                           uint8_t *out, int nthreads);

/* Exact integer GEMM: y[m, n] = sum_k xq[m, k] * W[n, k] in int32 (xq row-major m x k). */
TRI_EXPORT int tri_gemm_i8(const int8_t *xq, int64_t m, int64_t k, const uint8_t *w, int64_t n,
                           int64_t row_bytes, int fmt, int32_t *y, int nthreads);

/* Per-token absmax int8 quantization: s[t] = max|x[t,:]|/127 (1 if that is 0),
 * xq = clamp(round_half_even(x / s), -127, 127). Writes xq (m x k), s (m). */
TRI_EXPORT void tri_quantize_rows(const float *x, int64_t m, int64_t k, int8_t *xq, float *s,
                                  int nthreads);

/* The int8 linear of a quantized output head (tritium_lm.h): weights w[n, k] int8 with one
 * float scale per row, re-laid out by tri_i8_pack into panels of 16 rows (tri_i8_bytes of
 * them; wsum[n] receives the row sums); then y[m, n] = (float)(sum_k xq[t, k] w[n, k]) * sx[t]
 * * wscale[n] (+ bias[n]), xq/sx the per-token absmax int8 quantization of x (as
 * tri_quantize_rows), the sum exact in int32. tri_i8_gemm gives the raw int32 sums of given
 * int8 activations. Return 0, or 1 on allocation failure. */
TRI_EXPORT int64_t tri_i8_bytes(int64_t n, int64_t k);
TRI_EXPORT int tri_i8_pack(const int8_t *w, int64_t n, int64_t k, int8_t *out, int32_t *wsum);
TRI_EXPORT int tri_i8_linear(const float *x, int64_t m, int64_t k, const int8_t *wp, int64_t n,
                             const float *wscale, const int32_t *wsum, const float *bias,
                             float *y, int nthreads);
TRI_EXPORT int tri_i8_gemm(const int8_t *xq, int64_t m, int64_t k, const int8_t *wp, int64_t n,
                           const int32_t *wsum, int32_t *y, int nthreads);

/* tri_linear_planned on rmsnorm(x) (no weight: x / sqrt(mean(x^2) + eps) per row, the mean
 * in double): a frozen BitLinear in one call. Returns 0, or 1 on allocation failure. */
TRI_EXPORT int tri_rms_linear_planned(const TriLinearPlan *p, const float *x, int64_t m,
                                      float eps, int act, float *y, int nthreads,
                                      const uint8_t *gw);

/* Several frozen int8 layers on one input (the same k and format; no activation): the norm
 * and the quantization once, then each product into ys[i] (the same as separate
 * tri_rms_linear_planned calls). Returns 0, 1 on allocation failure, 2 for layers that do not
 * share k, format and int8 activations. */
TRI_EXPORT int tri_rms_multi_planned(const TriLinearPlan *const *plans, int64_t count,
                                     const float *x, int64_t m, float eps, float *const *ys,
                                     int nthreads);

#endif
