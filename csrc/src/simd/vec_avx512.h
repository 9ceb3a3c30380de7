#pragma once
// The vector layer for AVX-512 (F, BW, VL, DQ) with FMA and F16C: 16 float lanes in a
// __m512, so one vector is one weight-panel row. Included inside an anonymous namespace by
// the kernel set compiled with those flags.

#include <immintrin.h>

#include <cstdint>

#define GPT2CPU_VEC_INLINE inline __attribute__((always_inline))

constexpr int kLanes = 16;
using VF = __m512;

GPT2CPU_VEC_INLINE VF vzero() { return _mm512_setzero_ps(); }
GPT2CPU_VEC_INLINE VF vset1(float s) { return _mm512_set1_ps(s); }
GPT2CPU_VEC_INLINE VF vload(const float* p) { return _mm512_loadu_ps(p); }
GPT2CPU_VEC_INLINE void vstore(float* p, VF a) { _mm512_storeu_ps(p, a); }
GPT2CPU_VEC_INLINE VF vadd(VF a, VF b) { return _mm512_add_ps(a, b); }
GPT2CPU_VEC_INLINE VF vsub(VF a, VF b) { return _mm512_sub_ps(a, b); }
GPT2CPU_VEC_INLINE VF vmul(VF a, VF b) { return _mm512_mul_ps(a, b); }
GPT2CPU_VEC_INLINE VF vdiv(VF a, VF b) { return _mm512_div_ps(a, b); }
GPT2CPU_VEC_INLINE VF vmax(VF a, VF b) { return _mm512_max_ps(a, b); }
GPT2CPU_VEC_INLINE VF vmin(VF a, VF b) { return _mm512_min_ps(a, b); }
GPT2CPU_VEC_INLINE VF vfma(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
GPT2CPU_VEC_INLINE float vhsum(VF v) {
  const __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

GPT2CPU_VEC_INLINE VF vload_bf16(const uint16_t* p) {
  const __m512i wide =
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
GPT2CPU_VEC_INLINE VF vload_f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
GPT2CPU_VEC_INLINE VF vload_i8(const int8_t* p) {
  return _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
// See vec_generic.h for the layout: low nibbles are weights 0-7, high nibbles 8-15.
GPT2CPU_VEC_INLINE void vload_i4_row(const uint8_t* p, VF* out) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i low4 = _mm_set1_epi8(15);
  const __m128i lo = _mm_and_si128(bytes, low4);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
  const __m128i q = _mm_sub_epi8(_mm_unpacklo_epi64(lo, hi), _mm_set1_epi8(8));
  out[0] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
}
GPT2CPU_VEC_INLINE void vprefetch_l2(const void* p) {
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1);
}
