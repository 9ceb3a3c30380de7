#pragma once
// The vector layer for AVX2 + FMA + F16C: 8 float lanes in a __m256. Included inside an
// anonymous namespace by the kernel set compiled with those flags.

#include <immintrin.h>

#include <cstdint>

#define GPT2CPU_VEC_INLINE inline __attribute__((always_inline))

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
GPT2CPU_VEC_INLINE float vhsum(VF v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

GPT2CPU_VEC_INLINE VF vload_bf16(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
GPT2CPU_VEC_INLINE VF vload_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
GPT2CPU_VEC_INLINE VF vload_i8(const int8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
// See vec_generic.h for the layout: low nibbles are weights 0-7, high nibbles 8-15.
GPT2CPU_VEC_INLINE void vload_i4_row(const uint8_t* p, VF* out) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i low4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
  const __m128i lo = _mm_sub_epi8(_mm_and_si128(bytes, low4), eight);
  const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), low4), eight);
  out[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
  out[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
}
GPT2CPU_VEC_INLINE void vprefetch_l2(const void* p) {
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1);
}
