// Kernels for x86-64 CPUs with AVX2 and FMA. This file alone is compiled with -mavx2 -mfma;
// dispatch.cpp calls into it only after checking the CPU has both.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "gpt2cpu/kernels.h"

namespace gpt2cpu {
namespace {
#include "../simd/vec_avx2.h"
#include "portable.inc"
#include "weight_kernels.inc"

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// exp(x) for x <= 88, to about 2 ulp (Cephes' range reduction and polynomial).
inline __m256 exp_ps(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)),
                    _mm256_set1_ps(-87.3365478515625f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// 0.5 v (1 + tanh(u)), u = sqrt(2/pi) (v + 0.044715 v^3)   (GPT-2's "gelu_new"), computed
// as v / (1 + exp(-2u)): the same function with fewer operations, and no cancellation in
// 1 + tanh(u) for negative u.
inline __m256 gelu_tanh_ps(__m256 v) {
  const __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
  const __m256 minus_2u = _mm256_mul_ps(_mm256_set1_ps(-2.0f * 0.7978845608028654f),
                                        _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), v3, v));
  return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), exp_ps(minus_2u)));
}

// c (M, 16) = end(A (M, k) @ B (k, 16)) (see TileEnd), with A[i][p] at
// a[i * row_stride + p * kColStride]:
// (lda, 1) for a plain row-major tile, (1, kGemmRows) for a packed one; and B's row p at
// b + p * ldb: 16 for a weight panel, a head's width for values in the KV cache. The 2*M
// accumulators are named registers, not an array: GCC keeps arrays of vectors in memory
// when the function is not inlined, which halves the FMA rate.
template <int M, int64_t kColStride>
void gemm_tile_m(int64_t k, const float* a, int64_t row_stride, const float* b, int64_t ldb,
                 float* c, int64_t ldc, const TileEnd& end = TileEnd{}) {
  static_assert(M >= 1 && M <= 6, "at most 6 rows fit the 16 vector registers");
  __m256 l0 = _mm256_setzero_ps(), h0 = l0, l1 = l0, h1 = l0, l2 = l0, h2 = l0;
  __m256 l3 = l0, h3 = l0, l4 = l0, h4 = l0, l5 = l0, h5 = l0;
#define GPT2CPU_ROW(i, body) \
  if constexpr (M > i) {     \
    body(i, l##i, h##i)      \
  }
#define GPT2CPU_PREFETCH(i, lo, hi)                                      \
  _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0); \
  _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 15), _MM_HINT_T0);
#define GPT2CPU_FMA(i, lo, hi)                                            \
  {                                                                       \
    const __m256 av = _mm256_broadcast_ss(a + i * row_stride + p * kColStride); \
    lo = _mm256_fmadd_ps(av, b0, lo);                                     \
    hi = _mm256_fmadd_ps(av, b1, hi);                                     \
  }
#define GPT2CPU_BIAS(i, lo, hi)  \
  lo = _mm256_add_ps(lo, bias0); \
  hi = _mm256_add_ps(hi, bias1);
#define GPT2CPU_ADD_C(i, lo, hi)                                \
  lo = _mm256_add_ps(lo, _mm256_loadu_ps(c + i * ldc));         \
  hi = _mm256_add_ps(hi, _mm256_loadu_ps(c + i * ldc + 8));
#define GPT2CPU_GELU(i, lo, hi) \
  lo = gelu_tanh_ps(lo);        \
  hi = gelu_tanh_ps(hi);
#define GPT2CPU_STORE(i, lo, hi)          \
  _mm256_storeu_ps(c + i * ldc, lo);      \
  _mm256_storeu_ps(c + i * ldc + 8, hi);
#define GPT2CPU_ROWS(body) \
  GPT2CPU_ROW(0, body) GPT2CPU_ROW(1, body) GPT2CPU_ROW(2, body) \
  GPT2CPU_ROW(3, body) GPT2CPU_ROW(4, body) GPT2CPU_ROW(5, body)

  // c is added at the end, not loaded first: its rows are often out of cache (a prompt's
  // output is MBs), and the prefetch now lets the whole k loop hide the miss (or, when c is
  // only written, the fetch for ownership).
  GPT2CPU_ROWS(GPT2CPU_PREFETCH)
  // Unrolled: GCC leaves these loops rolled, and their 3 pointer and counter updates per
  // 12 FMAs cost about 1.5% of the GEMM's rate (measured at GPT-2's prompt shapes).
#define GPT2CPU_STEP                                     \
  {                                                      \
    const __m256 b0 = _mm256_loadu_ps(b + p * ldb);      \
    const __m256 b1 = _mm256_loadu_ps(b + p * ldb + 8);  \
    GPT2CPU_ROWS(GPT2CPU_FMA)                            \
  }
  int64_t p = 0;
  for (int64_t line = 0; line < end.prefetch_lines; ++line) {
    _mm_prefetch(end.prefetch + line * 64, _MM_HINT_T1);
    const int64_t stop = p + 16 < k ? p + 16 : k;
#pragma GCC unroll 4
    for (; p < stop; ++p) GPT2CPU_STEP
  }
#pragma GCC unroll 4
  for (; p < k; ++p) GPT2CPU_STEP
  if (end.bias != nullptr) {
    const __m256 bias0 = _mm256_loadu_ps(end.bias), bias1 = _mm256_loadu_ps(end.bias + 8);
    GPT2CPU_ROWS(GPT2CPU_BIAS)
  }
  if (end.add_to_c) {
    GPT2CPU_ROWS(GPT2CPU_ADD_C)
  }
  if (end.gelu_tanh) {
    GPT2CPU_ROWS(GPT2CPU_GELU)
  }
  GPT2CPU_ROWS(GPT2CPU_STORE)
#undef GPT2CPU_STEP
#undef GPT2CPU_ROWS
#undef GPT2CPU_STORE
#undef GPT2CPU_GELU
#undef GPT2CPU_ADD_C
#undef GPT2CPU_BIAS
#undef GPT2CPU_FMA
#undef GPT2CPU_PREFETCH
#undef GPT2CPU_ROW
}

// gemv for P panels at once: P streams in flight, one accumulator chain per output (see
// KernelTable::gemv). Memory-bound, so P * 2 chains of 4-cycle FMAs are plenty. As in
// gemm_tile_m, the chain starts from zero and c is added last: a decode step's row gets the
// same bits as that row in a few-row product.
template <int P>
void gemv_m(int64_t k, const float* a, const float* b, float* c) {
  static_assert(P >= 1 && P <= kGemvPanels && kGemvPanels == 4, "up to 4 named panels");
  const int64_t ld = k * 16;  // from one panel to the next
  __m256 l0 = _mm256_setzero_ps(), h0 = l0, l1 = l0, h1 = l0, l2 = l0, h2 = l0, l3 = l0, h3 = l0;
#define GPT2CPU_PANEL(q, body) \
  if constexpr (P > q) {       \
    body(q, l##q, h##q)        \
  }
#define GPT2CPU_FMA(q, lo, hi)                                          \
  lo = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + q * ld + p * 16), lo); \
  hi = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + q * ld + p * 16 + 8), hi);
#define GPT2CPU_ADD_C_AND_STORE(q, lo, hi)                                \
  _mm256_storeu_ps(c + q * 16, _mm256_add_ps(lo, _mm256_loadu_ps(c + q * 16))); \
  _mm256_storeu_ps(c + q * 16 + 8, _mm256_add_ps(hi, _mm256_loadu_ps(c + q * 16 + 8)));
#define GPT2CPU_PANELS(body) \
  GPT2CPU_PANEL(0, body) GPT2CPU_PANEL(1, body) GPT2CPU_PANEL(2, body) GPT2CPU_PANEL(3, body)

  for (int64_t p = 0; p < k; ++p) {
    const __m256 av = _mm256_broadcast_ss(a + p);
    GPT2CPU_PANELS(GPT2CPU_FMA)
  }
  GPT2CPU_PANELS(GPT2CPU_ADD_C_AND_STORE)
#undef GPT2CPU_PANELS
#undef GPT2CPU_ADD_C_AND_STORE
#undef GPT2CPU_FMA
#undef GPT2CPU_PANEL
}

void gemv_avx2(int64_t k, const float* a, const float* b, int64_t panels, float* c) {
  for (int64_t q = 0; q < panels; q += kGemvPanels) {
    const float* bq = b + q * k * 16;
    float* cq = c + q * 16;
    switch (panels - q) {
      case 1: gemv_m<1>(k, a, bq, cq); break;
      case 2: gemv_m<2>(k, a, bq, cq); break;
      case 3: gemv_m<3>(k, a, bq, cq); break;
      default: gemv_m<4>(k, a, bq, cq); break;
    }
  }
}

// gemm_tile_m for a row count known only at run time, 1 <= m <= 6.
template <int64_t kColStride>
void gemm_tile_rows(int64_t m, int64_t k, const float* a, int64_t row_stride, const float* b,
                    int64_t ldb, float* c, int64_t ldc, const TileEnd& end = TileEnd{}) {
  switch (m) {
    case 1: gemm_tile_m<1, kColStride>(k, a, row_stride, b, ldb, c, ldc, end); break;
    case 2: gemm_tile_m<2, kColStride>(k, a, row_stride, b, ldb, c, ldc, end); break;
    case 3: gemm_tile_m<3, kColStride>(k, a, row_stride, b, ldb, c, ldc, end); break;
    case 4: gemm_tile_m<4, kColStride>(k, a, row_stride, b, ldb, c, ldc, end); break;
    case 5: gemm_tile_m<5, kColStride>(k, a, row_stride, b, ldb, c, ldc, end); break;
    default: gemm_tile_m<6, kColStride>(k, a, row_stride, b, ldb, c, ldc, end); break;
  }
}

void gemm_tile_avx2(int64_t m, int64_t k, const float* a, int64_t lda, const float* b, float* c,
                    int64_t ldc) {
  if (m <= kGemmRows) {
    gemm_tile_rows<1>(m, k, a, lda, b, 16, c, ldc);
  } else {
    gemm_tile_portable(m, k, a, lda, b, c, ldc);
  }
}

void gemm_packed_avx2(int64_t k, const float* a, const float* b, float* c, int64_t ldc,
                      const TileEnd& end) {
  gemm_tile_m<6, 6>(k, a, 1, b, 16, c, ldc, end);
}

// r (8 rows of 8) transposed in place: r[j] becomes column j.
inline void transpose8x8(__m256 r[8]) {
  __m256 u[8];
  for (int i = 0; i < 8; i += 2) {
    u[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    u[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  // For i < 4, s[i] holds columns i and i + 4 of rows 0-3 (low and high half), s[i + 4]
  // the same columns of rows 4-7.
  __m256 s[8];
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_shuffle_ps(u[i], u[i + 2], 0x44);
    s[i + 1] = _mm256_shuffle_ps(u[i], u[i + 2], 0xEE);
    s[i + 2] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0x44);
    s[i + 3] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
  }
}

// pack_tile with 8 columns at a time: the 6 rows' 8-float chunks (and two zero rows) are
// transposed in registers, and each column's 6 floats stored with one 8-float store whose
// last two lanes the next column's store overwrites.
void pack_tile_avx2(float* dst, const float* src, int64_t ld, int64_t m, int64_t kc) {
  if (m != kGemmRows) {  // the ragged last tile of a prompt: rare, so plain code
    pack_tile_portable(dst, src, ld, m, kc);
    return;
  }
  int64_t p = 0;
  for (; p + 8 <= kc; p += 8, dst += 8 * kGemmRows) {
    __m256 r[8];
    for (int i = 0; i < kGemmRows; ++i) r[i] = _mm256_loadu_ps(src + i * ld + p);
    r[6] = r[7] = _mm256_setzero_ps();
    transpose8x8(r);
    for (int j = 0; j < 7; ++j) _mm256_storeu_ps(dst + j * kGemmRows, r[j]);
    // The last column: exactly 6 floats, so nothing is written past this chunk.
    _mm_storeu_ps(dst + 7 * kGemmRows, _mm256_castps256_ps128(r[7]));
    _mm_storel_pi(reinterpret_cast<__m64*>(dst + 7 * kGemmRows + 4),
                  _mm256_extractf128_ps(r[7], 1));
  }
  if (p < kc) pack_tile_portable(dst, src + p, ld, m, kc - p);
}

void gelu_tanh_avx2(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, gelu_tanh_ps(_mm256_loadu_ps(x + i)));
  gelu_tanh_portable(x + i, n - i);
}

// Each stream is read 128 bytes at a time, into four accumulators, so adds keep up with
// any memory system.
float sum_avx2(const float* x, int64_t n, int64_t streams) {
  const int64_t part = n / streams / 32 * 32;  // each stream's floats, in whole 128-byte steps
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < part; i += 32) {
    for (int64_t s = 0; s < streams; ++s) {
      const float* p = x + s * part + i;
      a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p));
      a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + 8));
      a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + 16));
      a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + 24));
    }
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  return hsum(s) + sum_portable(x + streams * part, n - streams * part);
}

// w = exp(x - shift) for 8 floats, 0 below kExpWeightFloor (exp_ps alone would clamp them
// to its smallest result), adding them to acc in double.
inline __m256 exp_weights_ps(__m256 x, __m256 shift, __m256d& acc_lo, __m256d& acc_hi) {
  const __m256 d = _mm256_sub_ps(x, shift);
  const __m256 in_range = _mm256_cmp_ps(d, _mm256_set1_ps(kExpWeightFloor), _CMP_GE_OQ);
  const __m256 w = _mm256_and_ps(exp_ps(d), in_range);
  acc_lo = _mm256_add_pd(acc_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(w)));
  acc_hi = _mm256_add_pd(acc_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(w, 1)));
  return w;
}

double exp_weights_avx2(float* w, const float* x, int64_t n, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256d lo = _mm256_setzero_pd(), hi = lo;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(w + i, exp_weights_ps(_mm256_loadu_ps(x + i), s, lo, hi));
  }
  if (i < n) {  // the last few through the same vector code, padded with -inf (weight 0)
    alignas(32) float tail[8];
    for (int j = 0; j < 8; ++j) tail[j] = i + j < n ? x[i + j] : -INFINITY;
    _mm256_store_ps(tail, exp_weights_ps(_mm256_load_ps(tail), s, lo, hi));
    for (int64_t j = 0; i + j < n; ++j) w[i + j] = tail[j];
  }
  const __m256d sum = _mm256_add_pd(lo, hi);
  const __m128d pair = _mm_add_pd(_mm256_castpd256_pd128(sum), _mm256_extractf128_pd(sum, 1));
  return _mm_cvtsd_f64(_mm_add_sd(pair, _mm_unpackhi_pd(pair, pair)));
}

float multiply_add_avx2(int64_t rounds, float x) {
  static_assert(kMultiplyAddLanes == 12 * 8, "12 named chains of 8 lanes");
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  // Value j starts at x + j: chains that all started alike could be merged by the compiler.
  const __m256 first = _mm256_add_ps(_mm256_set1_ps(x), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7));
  const auto chain = [&](int c) { return _mm256_add_ps(first, _mm256_set1_ps(8.0f * c)); };
  __m256 v0 = chain(0), v1 = chain(1), v2 = chain(2), v3 = chain(3), v4 = chain(4);
  __m256 v5 = chain(5), v6 = chain(6), v7 = chain(7), v8 = chain(8), v9 = chain(9);
  __m256 v10 = chain(10), v11 = chain(11);
  for (int64_t r = 0; r < rounds; ++r) {
    v0 = _mm256_fmadd_ps(v0, half, one);
    v1 = _mm256_fmadd_ps(v1, half, one);
    v2 = _mm256_fmadd_ps(v2, half, one);
    v3 = _mm256_fmadd_ps(v3, half, one);
    v4 = _mm256_fmadd_ps(v4, half, one);
    v5 = _mm256_fmadd_ps(v5, half, one);
    v6 = _mm256_fmadd_ps(v6, half, one);
    v7 = _mm256_fmadd_ps(v7, half, one);
    v8 = _mm256_fmadd_ps(v8, half, one);
    v9 = _mm256_fmadd_ps(v9, half, one);
    v10 = _mm256_fmadd_ps(v10, half, one);
    v11 = _mm256_fmadd_ps(v11, half, one);
  }
  const __m256 s = _mm256_add_ps(
      _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(v0, v1), _mm256_add_ps(v2, v3)),
                    _mm256_add_ps(_mm256_add_ps(v4, v5), _mm256_add_ps(v6, v7))),
      _mm256_add_ps(_mm256_add_ps(v8, v9), _mm256_add_ps(v10, v11)));
  return hsum(s);
}

// Four dot products q . keys[0..3] at once: four independent FMA chains.
inline __m128 dot4(const float* q, const float* k0, int64_t d) {
  const float* k1 = k0 + d;
  const float* k2 = k1 + d;
  const float* k3 = k2 + d;
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    const __m256 qv = _mm256_loadu_ps(q + i);
    s0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + i), s0);
    s1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + i), s1);
    s2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + i), s2);
    s3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + i), s3);
  }
  // Transpose-and-add the four accumulators into one vector of four sums.
  const __m256 h01 = _mm256_hadd_ps(s0, s1);
  const __m256 h23 = _mm256_hadd_ps(s2, s3);
  const __m256 h = _mm256_hadd_ps(h01, h23);
  __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  if (i < d) {
    alignas(16) float tail[4] = {0, 0, 0, 0};
    for (int64_t j = i; j < d; ++j) {
      tail[0] += q[j] * k0[j];
      tail[1] += q[j] * k1[j];
      tail[2] += q[j] * k2[j];
      tail[3] += q[j] * k3[j];
    }
    r = _mm_add_ps(r, _mm_load_ps(tail));
  }
  return r;
}

inline float dot1(const float* q, const float* k, int64_t d) {
  __m256 s = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), s);
  float r = hsum(s);
  for (; i < d; ++i) r += q[i] * k[i];
  return r;
}

void attend_avx2(float* out, const float* q, const float* keys, const float* values, int64_t n,
                 int64_t d, float scale, float* scores) {
  // Scores, scaled.
  // Eight keys at a time: two dot4 calls interleaved by the compiler into eight
  // independent FMA chains, enough to keep both FMA units busy.
  const __m128 scale4 = _mm_set1_ps(scale);
  int64_t t = 0;
  for (; t + 8 <= n; t += 8) {
    const __m128 lo = dot4(q, keys + t * d, d);
    const __m128 hi = dot4(q, keys + (t + 4) * d, d);
    _mm_storeu_ps(scores + t, _mm_mul_ps(lo, scale4));
    _mm_storeu_ps(scores + t + 4, _mm_mul_ps(hi, scale4));
  }
  for (; t + 4 <= n; t += 4) _mm_storeu_ps(scores + t, _mm_mul_ps(dot4(q, keys + t * d, d), scale4));
  for (; t < n; ++t) scores[t] = dot1(q, keys + t * d, d) * scale;

  // Softmax numerators and their sum.
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  for (t = 0; t + 8 <= n; t += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(scores + t));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  float max_score = lanes[0];
  for (int j = 1; j < 8; ++j) max_score = lanes[j] > max_score ? lanes[j] : max_score;
  for (; t < n; ++t) max_score = scores[t] > max_score ? scores[t] : max_score;
  const __m256 m = _mm256_set1_ps(max_score);
  __m256 vsum = _mm256_setzero_ps();
  for (t = 0; t + 8 <= n; t += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(scores + t), m));
    _mm256_storeu_ps(scores + t, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float total = hsum(vsum);
  for (; t < n; ++t) {
    scores[t] = std::exp(scores[t] - max_score);
    total += scores[t];
  }

  // out = sum_t p_t v_t / total, output lanes held in registers across t: 64 at a time
  // (eight independent FMA chains, as many as hide the FMA latency), then 32, then 8.
  const __m256 inv = _mm256_set1_ps(1.0f / total);
  int64_t i = 0;
  for (; i + 64 <= d; i += 64) {
    __m256 o0 = _mm256_setzero_ps(), o1 = o0, o2 = o0, o3 = o0, o4 = o0, o5 = o0, o6 = o0, o7 = o0;
    const float* v = values + i;
    for (t = 0; t < n; ++t, v += d) {
      const __m256 p = _mm256_broadcast_ss(scores + t);
      o0 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v), o0);
      o1 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 8), o1);
      o2 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 16), o2);
      o3 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 24), o3);
      o4 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 32), o4);
      o5 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 40), o5);
      o6 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 48), o6);
      o7 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 56), o7);
    }
    _mm256_storeu_ps(out + i, _mm256_mul_ps(o0, inv));
    _mm256_storeu_ps(out + i + 8, _mm256_mul_ps(o1, inv));
    _mm256_storeu_ps(out + i + 16, _mm256_mul_ps(o2, inv));
    _mm256_storeu_ps(out + i + 24, _mm256_mul_ps(o3, inv));
    _mm256_storeu_ps(out + i + 32, _mm256_mul_ps(o4, inv));
    _mm256_storeu_ps(out + i + 40, _mm256_mul_ps(o5, inv));
    _mm256_storeu_ps(out + i + 48, _mm256_mul_ps(o6, inv));
    _mm256_storeu_ps(out + i + 56, _mm256_mul_ps(o7, inv));
  }
  for (; i + 32 <= d; i += 32) {
    __m256 o0 = _mm256_setzero_ps(), o1 = _mm256_setzero_ps();
    __m256 o2 = _mm256_setzero_ps(), o3 = _mm256_setzero_ps();
    const float* v = values + i;
    for (t = 0; t < n; ++t, v += d) {
      const __m256 p = _mm256_broadcast_ss(scores + t);
      o0 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v), o0);
      o1 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 8), o1);
      o2 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 16), o2);
      o3 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 24), o3);
    }
    _mm256_storeu_ps(out + i, _mm256_mul_ps(o0, inv));
    _mm256_storeu_ps(out + i + 8, _mm256_mul_ps(o1, inv));
    _mm256_storeu_ps(out + i + 16, _mm256_mul_ps(o2, inv));
    _mm256_storeu_ps(out + i + 24, _mm256_mul_ps(o3, inv));
  }
  for (; i + 8 <= d; i += 8) {
    __m256 o = _mm256_setzero_ps();
    const float* v = values + i;
    for (t = 0; t < n; ++t, v += d) o = _mm256_fmadd_ps(_mm256_broadcast_ss(scores + t), _mm256_loadu_ps(v), o);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(o, inv));
  }
  const float inv_total = 1.0f / total;
  for (; i < d; ++i) {
    float o = 0.0f;
    for (t = 0; t < n; ++t) o += scores[t] * values[t * d + i];
    out[i] = o * inv_total;
  }
}

// A tile end that only writes the product.
constexpr TileEnd kWrite{nullptr, false, false};

// c (m, 16) = P[i0 : i0 + m] (n) @ V (n, 16 columns, row stride ldv), where P is held
// transposed, 16 queries to a row: P[i][j] = pt[j * 16 + i].
void weighted_values(int64_t m, int64_t n, const float* pt, const float* v, int64_t ldv,
                     float* c) {
  gemm_tile_rows<16>(m, n, pt, 1, v, ldv, c, 16, kWrite);
}

// The 8x8 block at src (row stride lds), times scale, transposed into dst (row stride ldd).
inline void transpose8x8_scaled(float* dst, int64_t ldd, const float* src, int64_t lds,
                                __m256 scale) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_mul_ps(_mm256_loadu_ps(src + i * lds), scale);
  transpose8x8(r);
  for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + i * ldd, r[i]);
}

// qt (d, 16) = the block's queries, scaled and transposed; zero past its m rows.
void transpose_queries(float* qt, const AttendBlock& job) {
  const int64_t d = job.d, m = job.m;
  if (m == kAttendBlock && d % 8 == 0) {
    const __m256 scale = _mm256_set1_ps(job.scale);
    for (int64_t i0 = 0; i0 < kAttendBlock; i0 += 8) {
      for (int64_t p0 = 0; p0 < d; p0 += 8) {
        transpose8x8_scaled(qt + p0 * kAttendBlock + i0, kAttendBlock,
                            job.q + i0 * job.ldq + p0, job.ldq, scale);
      }
    }
    return;
  }
  for (int64_t p = 0; p < d; ++p) {
    for (int64_t i = 0; i < kAttendBlock; ++i) {
      qt[p * kAttendBlock + i] = i < m ? job.q[i * job.ldq + p] * job.scale : 0.0f;
    }
  }
}

// Scores are computed transposed, keys down and the block's 16 queries across, so that the
// softmax over keys runs down columns with whole vectors: no horizontal reductions, and
// both products go through the GEMM micro-kernel.
void attend_block_avx2(const AttendBlock& job, float* scratch) {
  const int64_t d = job.d, m = job.m, n = job.pos0 + job.m;
  if (d % 16 != 0) {  // the value product works in 16-column panels
    attend_each_query(job, scratch, attend_avx2);
    return;
  }
  float* qt = scratch;           // (d, 16): the queries, scaled and transposed
  float* st = scratch + d * 16;  // (n, 16): scores, then softmax numerators
  transpose_queries(qt, job);
  int64_t j0 = 0;
  for (; j0 + kGemmRows <= n; j0 += kGemmRows) {
    gemm_tile_m<6, 1>(d, job.keys + j0 * d, d, qt, 16, st + j0 * 16, 16, kWrite);
  }
  if (j0 < n) gemm_tile_rows<1>(n - j0, d, job.keys + j0 * d, d, qt, 16, st + j0 * 16, 16, kWrite);

  // Causal mask: key pos0 + r is in the future of queries [0, r).
  for (int64_t r = 1; r < m; ++r) {
    for (int64_t i = 0; i < r; ++i) st[(job.pos0 + r) * 16 + i] = -INFINITY;
  }
  const __m256 neg_inf = _mm256_set1_ps(-INFINITY);
  __m256 max0 = neg_inf, max1 = neg_inf;
  for (int64_t j = 0; j < n; ++j) {
    max0 = _mm256_max_ps(max0, _mm256_loadu_ps(st + j * 16));
    max1 = _mm256_max_ps(max1, _mm256_loadu_ps(st + j * 16 + 8));
  }
  // exp_ps clamps -inf to a tiny positive number: in the rows that hold masked scores (the
  // last m - 1), those are zeroed explicitly.
  __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
  const int64_t unmasked = job.pos0 + 1;
  for (int64_t j = 0; j < n; ++j) {
    const __m256 s0 = _mm256_loadu_ps(st + j * 16), s1 = _mm256_loadu_ps(st + j * 16 + 8);
    __m256 e0 = exp_ps(_mm256_sub_ps(s0, max0));
    __m256 e1 = exp_ps(_mm256_sub_ps(s1, max1));
    if (j >= unmasked) {
      e0 = _mm256_and_ps(e0, _mm256_cmp_ps(s0, neg_inf, _CMP_NEQ_OQ));
      e1 = _mm256_and_ps(e1, _mm256_cmp_ps(s1, neg_inf, _CMP_NEQ_OQ));
    }
    _mm256_storeu_ps(st + j * 16, e0);
    _mm256_storeu_ps(st + j * 16 + 8, e1);
    sum0 = _mm256_add_ps(sum0, e0);
    sum1 = _mm256_add_ps(sum1, e1);
  }
  alignas(32) float inv[16];
  _mm256_store_ps(inv, _mm256_div_ps(_mm256_set1_ps(1.0f), sum0));
  _mm256_store_ps(inv + 8, _mm256_div_ps(_mm256_set1_ps(1.0f), sum1));

  alignas(64) float tile[kGemmRows * 16];
  for (int64_t i0 = 0; i0 < m; i0 += kGemmRows) {
    const int64_t rows = m - i0 < kGemmRows ? m - i0 : kGemmRows;
    for (int64_t c0 = 0; c0 < d; c0 += 16) {
      weighted_values(rows, n, st + i0, job.values + c0, d, tile);
      for (int64_t r = 0; r < rows; ++r) {
        const __m256 w = _mm256_set1_ps(inv[i0 + r]);
        float* o = job.out + (i0 + r) * job.ldo + c0;
        _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_load_ps(tile + r * 16), w));
        _mm256_storeu_ps(o + 8, _mm256_mul_ps(_mm256_load_ps(tile + r * 16 + 8), w));
      }
    }
  }
}

KernelTable make_table() {
  KernelTable t{};
  t.name = "avx2";
  fill_weight_kernels(t.weights);
  t.gemm_tile = gemm_tile_avx2;
  t.gemv = gemv_avx2;
  t.gemm_packed = gemm_packed_avx2;
  t.pack_tile = pack_tile_avx2;
  t.layernorm = layernorm_portable;
  t.gelu_tanh = gelu_tanh_avx2;
  t.sum = sum_avx2;
  t.multiply_add = multiply_add_avx2;
  t.exp_weights = exp_weights_avx2;
  t.attend = attend_avx2;
  t.attend_block = attend_block_avx2;
  return t;
}

}  // namespace

const KernelTable& avx2_kernels() {
  static const KernelTable table = make_table();
  return table;
}

}  // namespace gpt2cpu
