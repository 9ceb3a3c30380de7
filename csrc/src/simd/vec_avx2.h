#pragma once
// The vector layer for AVX2 + FMA + F16C: 8 float lanes in a __m256. Included by the kernel
// set compiled with those flags; everything is in an anonymous namespace, so no other
// set's code can stand in for it at link time.

#include <immintrin.h>

#include <cstdint>

#define GPT2CPU_VEC_INLINE inline __attribute__((always_inline))

#include "vec_x86_avx.h"  // vtranspose8x8

namespace gpt2cpu {
namespace {

constexpr int kLanes = 8;
using VF = __m256;

GPT2CPU_VEC_INLINE VF vzero() { return _mm256_setzero_ps(); }
GPT2CPU_VEC_INLINE VF vset1(float s) { return _mm256_set1_ps(s); }
GPT2CPU_VEC_INLINE VF vload(const float* p) { return _mm256_loadu_ps(p); }
GPT2CPU_VEC_INLINE void vstore(float* p, VF a) { _mm256_storeu_ps(p, a); }
GPT2CPU_VEC_INLINE VF vadd(VF a, VF b) { return _mm256_add_ps(a, b); }
GPT2CPU_VEC_INLINE VF vsub(VF a, VF b) { return _mm256_sub_ps(a, b); }
GPT2CPU_VEC_INLINE VF vmul(VF a, VF b) { return _mm256_mul_ps(a, b); }
GPT2CPU_VEC_INLINE VF vdiv(VF a, VF b) { return _mm256_div_ps(a, b); }
GPT2CPU_VEC_INLINE VF vmax(VF a, VF b) { return _mm256_max_ps(a, b); }
GPT2CPU_VEC_INLINE VF vmin(VF a, VF b) { return _mm256_min_ps(a, b); }
GPT2CPU_VEC_INLINE VF vfma(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }
// c - a * b
GPT2CPU_VEC_INLINE VF vfnma(VF a, VF b, VF c) { return _mm256_fnmadd_ps(a, b, c); }
GPT2CPU_VEC_INLINE VF vround(VF a) {
  return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
// 2^n for whole n in [-126, 127].
GPT2CPU_VEC_INLINE VF vpow2i(VF n) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
}
// x where a >= b, else 0 (0 also where either is NaN).
GPT2CPU_VEC_INLINE VF vkeep_ge(VF x, VF a, VF b) {
  return _mm256_and_ps(x, _mm256_cmp_ps(a, b, _CMP_GE_OQ));
}
// x where a != b, else 0 (0 also where either is NaN).
GPT2CPU_VEC_INLINE VF vkeep_ne(VF x, VF a, VF b) {
  return _mm256_and_ps(x, _mm256_cmp_ps(a, b, _CMP_NEQ_OQ));
}
GPT2CPU_VEC_INLINE float vhsum(VF v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
GPT2CPU_VEC_INLINE float vhmax(VF v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// out[0..3] = the sums of a, b, c and d, transposed and added at once.
GPT2CPU_VEC_INLINE void vhsum4(VF a, VF b, VF c, VF d, float* out) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
// Lane j = the sum of v[j]'s lanes, for v[0..kLanes): a transpose-add tree, no
// per-vector horizontal sum. Each hadd pair leaves v[0..3]'s low-half sums in the low
// half and their high-half sums in the high half (v[4..7] likewise); the last step adds
// the halves across.
GPT2CPU_VEC_INLINE VF vhsum_lanes(const VF* v) {
  const __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  const __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}

// kLanes running sums in double.
struct VD {
  __m256d lo, hi;
};
GPT2CPU_VEC_INLINE VD vdzero() { return VD{_mm256_setzero_pd(), _mm256_setzero_pd()}; }
GPT2CPU_VEC_INLINE VD vdadd(VD acc, VF x) {
  return VD{_mm256_add_pd(acc.lo, _mm256_cvtps_pd(_mm256_castps256_ps128(x))),
            _mm256_add_pd(acc.hi, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)))};
}
GPT2CPU_VEC_INLINE double vdsum(VD acc) {
  const __m256d s = _mm256_add_pd(acc.lo, acc.hi);
  const __m128d pair = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
  return _mm_cvtsd_f64(_mm_add_sd(pair, _mm_unpackhi_pd(pair, pair)));
}

GPT2CPU_VEC_INLINE VF vload_bf16(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
// kLanes int8 values (an int8 KV cache's) widened to float, exactly.
GPT2CPU_VEC_INLINE VF vload_i8(const int8_t* p) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
}
GPT2CPU_VEC_INLINE VF vload_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
GPT2CPU_VEC_INLINE void vprefetch_l2(const void* p) {
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1);
}
GPT2CPU_VEC_INLINE void vprefetch_l1(const void* p) {
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
}
// kLanes whole numbers in [-127, 127] (as floats) stored as int8: an integer product's
// quantized input.
GPT2CPU_VEC_INLINE void vstore_i8(int8_t* p, VF a) {
  const __m256i w = _mm256_cvtps_epi32(a);
  const __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi16(h, h));
}


// Integer dot products for the integer weight types (packed_matrix.h has the layouts):
// kLanes int32 lanes, one output each. A prepared block is kRowVecs vectors of 4 bytes a
// lane (output j's 4 rows); vdot adds each lane's 4 products with the 4 activation bytes.
// AVX2 has no 4-way byte dot product: pmaddubsw (unsigned x signed bytes, pairs summed to
// int16) then pmaddwd by ones (pairs to int32). int8 weights go through their magnitude
// and the activations carry their sign, so no int16 sum can saturate (2 * 127 * 127).
using VI = __m256i;
GPT2CPU_VEC_INLINE VI vizero() { return _mm256_setzero_si256(); }
GPT2CPU_VEC_INLINE VI vset1_i32(int32_t x) { return _mm256_set1_epi32(x); }
GPT2CPU_VEC_INLINE VI vsub_i32(VI a, VI b) { return _mm256_sub_epi32(a, b); }
GPT2CPU_VEC_INLINE VF vcvt_i32(VI a) { return _mm256_cvtepi32_ps(a); }
// The 4 activation bytes at a, in every lane.
GPT2CPU_VEC_INLINE VI vbcast4(const int8_t* a) {
  int32_t x;
  __builtin_memcpy(&x, a, 4);
  return _mm256_set1_epi32(x);
}

// What vdot_i8 and vdot_i4 count beyond the true sum, per unit of the activations' sum:
// the offset the stored form adds to each weight, where the product sees it.
constexpr int32_t kDotOffsetI8 = 0;
constexpr int32_t kDotOffsetI4 = 8;

struct DotI8 {
  VI magnitude[2], sign[2];
};
GPT2CPU_VEC_INLINE DotI8 vprep_i8(const uint8_t* block) {
  DotI8 w;
  for (int i = 0; i < 2; ++i) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 32 * i));
    w.sign[i] = _mm256_xor_si256(u, _mm256_set1_epi8(static_cast<char>(0x80)));
    w.magnitude[i] = _mm256_abs_epi8(w.sign[i]);
  }
  return w;
}
GPT2CPU_VEC_INLINE VI vdot_i8(VI acc, const DotI8& w, int i, VI a4) {
  const __m256i pairs = _mm256_maddubs_epi16(w.magnitude[i], _mm256_sign_epi8(a4, w.sign[i]));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

struct DotI4 {
  VI u[2];
};
GPT2CPU_VEC_INLINE DotI4 vprep_i4(const uint8_t* block) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block));
  const __m256i low4 = _mm256_set1_epi8(15);
  return DotI4{{_mm256_and_si256(x, low4), _mm256_and_si256(_mm256_srli_epi16(x, 4), low4)}};
}
GPT2CPU_VEC_INLINE VI vdot_i4(VI acc, const DotI4& w, int i, VI a4) {
  const __m256i pairs = _mm256_maddubs_epi16(w.u[i], a4);
  return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

}  // namespace
}  // namespace gpt2cpu
