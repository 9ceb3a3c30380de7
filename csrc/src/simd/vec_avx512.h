#pragma once
// The vector layer for AVX-512 (F, BW, VL, DQ) with FMA and F16C: 16 float lanes in a
// __m512, so one vector is one weight-panel row. Included by the kernel set compiled with
// those flags; everything is in an anonymous namespace, so no other set's code can stand
// in for it at link time.

#include <immintrin.h>

#include <cstdint>

#define GPT2CPU_VEC_INLINE inline __attribute__((always_inline))

#include "vec_x86_avx.h"  // vtranspose8x8

namespace gpt2cpu {
namespace {

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
// c - a * b
GPT2CPU_VEC_INLINE VF vfnma(VF a, VF b, VF c) { return _mm512_fnmadd_ps(a, b, c); }
GPT2CPU_VEC_INLINE VF vround(VF a) {
  return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
// 2^n for whole n in [-126, 127].
GPT2CPU_VEC_INLINE VF vpow2i(VF n) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
}
// x where a >= b, else 0 (0 also where either is NaN).
GPT2CPU_VEC_INLINE VF vkeep_ge(VF x, VF a, VF b) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, b, _CMP_GE_OQ), x);
}
// x where a != b, else 0 (0 also where either is NaN).
GPT2CPU_VEC_INLINE VF vkeep_ne(VF x, VF a, VF b) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, b, _CMP_NEQ_OQ), x);
}
GPT2CPU_VEC_INLINE __m256 vhalves_sum(VF v) {
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
}
GPT2CPU_VEC_INLINE float vhsum(VF v) {
  const __m256 s = vhalves_sum(v);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}
GPT2CPU_VEC_INLINE float vhmax(VF v) { return _mm512_reduce_max_ps(v); }
// out[0..3] = the sums of a, b, c and d, transposed and added at once.
GPT2CPU_VEC_INLINE void vhsum4(VF a, VF b, VF c, VF d, float* out) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(vhalves_sum(a), vhalves_sum(b)),
                                  _mm256_hadd_ps(vhalves_sum(c), vhalves_sum(d)));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
// Lane j = the sum of v[j]'s lanes, for v[0..kLanes): a transpose-add tree, 15 adds and
// 30 shuffles for 16 sums. Each level halves the vectors and the width each source
// occupies (256-bit halves, 128-bit blocks, pairs, single lanes); the pairings (j with
// j + 4, then with j + 8) leave block l holding sources 4l..4l+3, so the sums come out in
// order with no final permute.
GPT2CPU_VEC_INLINE VF vhsum_lanes(const VF* v) {
  __m512 w[8];  // w[i]: v[k]'s 8-lane partial sums low, v[k + 4]'s high; k = i + (i & 4)
  for (int i = 0; i < 8; ++i) {
    const int k = i + (i & 4);
    w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[k], v[k + 4], 0x44),
                         _mm512_shuffle_f32x4(v[k], v[k + 4], 0xEE));
  }
  __m512 z[4];  // z[k]: block l = v[k + 4l]'s 4-lane partial sums
  for (int k = 0; k < 4; ++k) {
    z[k] = _mm512_add_ps(_mm512_shuffle_f32x4(w[k], w[k + 4], 0x88),
                         _mm512_shuffle_f32x4(w[k], w[k + 4], 0xDD));
  }
  __m512 r[2];  // r[h]: block l = v[4l + 2h]'s, then v[4l + 2h + 1]'s, 2-lane partial sums
  for (int h = 0; h < 2; ++h) {
    const __m512d a = _mm512_castps_pd(z[2 * h]), b = _mm512_castps_pd(z[2 * h + 1]);
    r[h] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  return _mm512_add_ps(_mm512_shuffle_ps(r[0], r[1], 0x88), _mm512_shuffle_ps(r[0], r[1], 0xDD));
}

// kLanes running sums in double.
struct VD {
  __m512d lo, hi;
};
GPT2CPU_VEC_INLINE VD vdzero() { return VD{_mm512_setzero_pd(), _mm512_setzero_pd()}; }
GPT2CPU_VEC_INLINE VD vdadd(VD acc, VF x) {
  return VD{_mm512_add_pd(acc.lo, _mm512_cvtps_pd(_mm512_castps512_ps256(x))),
            _mm512_add_pd(acc.hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1)))};
}
GPT2CPU_VEC_INLINE double vdsum(VD acc) { return _mm512_reduce_add_pd(_mm512_add_pd(acc.lo, acc.hi)); }

GPT2CPU_VEC_INLINE VF vload_bf16(const uint16_t* p) {
  const __m512i wide =
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
// kLanes int8 values (an int8 KV cache's) widened to float, exactly.
GPT2CPU_VEC_INLINE VF vload_i8(const int8_t* p) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes));
}
GPT2CPU_VEC_INLINE VF vload_f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
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
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(a)));
}


// Integer dot products for the integer weight types (see vec_avx2.h): one vector per
// block. With VNNI, vpdpbusd takes the stored (unsigned) bytes as they are: 64 products a
// instruction. Without it, the AVX2 scheme on 512 bits.
using VI = __m512i;
GPT2CPU_VEC_INLINE VI vizero() { return _mm512_setzero_si512(); }
GPT2CPU_VEC_INLINE VI vset1_i32(int32_t x) { return _mm512_set1_epi32(x); }
GPT2CPU_VEC_INLINE VI vsub_i32(VI a, VI b) { return _mm512_sub_epi32(a, b); }
GPT2CPU_VEC_INLINE VF vcvt_i32(VI a) { return _mm512_cvtepi32_ps(a); }
GPT2CPU_VEC_INLINE VI vbcast4(const int8_t* a) {
  int32_t x;
  __builtin_memcpy(&x, a, 4);
  return _mm512_set1_epi32(x);
}

GPT2CPU_VEC_INLINE __m512i vdot_u8s8(__m512i acc, __m512i u, __m512i s) {
#if defined(__AVX512VNNI__)
  return _mm512_dpbusd_epi32(acc, u, s);
#else
  const __m512i pairs = _mm512_maddubs_epi16(u, s);
  return _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
#endif
}

#if defined(__AVX512VNNI__)
constexpr int32_t kDotOffsetI8 = 128;
struct DotI8 {
  VI u[1];
};
GPT2CPU_VEC_INLINE DotI8 vprep_i8(const uint8_t* block) {
  return DotI8{{_mm512_loadu_si512(block)}};
}
GPT2CPU_VEC_INLINE VI vdot_i8(VI acc, const DotI8& w, int i, VI a4) {
  return vdot_u8s8(acc, w.u[i], a4);
}
#else
constexpr int32_t kDotOffsetI8 = 0;
struct DotI8 {
  VI magnitude[1], sign[1];
};
GPT2CPU_VEC_INLINE DotI8 vprep_i8(const uint8_t* block) {
  const __m512i s = _mm512_xor_si512(_mm512_loadu_si512(block),
                                     _mm512_set1_epi8(static_cast<char>(0x80)));
  return DotI8{{_mm512_abs_epi8(s)}, {s}};
}
GPT2CPU_VEC_INLINE VI vdot_i8(VI acc, const DotI8& w, int i, VI a4) {
  // a4 with the sign of each weight byte (no vpsignb on 512 bits: negate where negative).
  const __mmask64 negative = _mm512_movepi8_mask(w.sign[i]);
  const __m512i signed_a = _mm512_mask_sub_epi8(a4, negative, _mm512_setzero_si512(), a4);
  return vdot_u8s8(acc, w.magnitude[i], signed_a);
}
#endif

constexpr int32_t kDotOffsetI4 = 8;
struct DotI4 {
  VI u[1];
};
GPT2CPU_VEC_INLINE DotI4 vprep_i4(const uint8_t* block) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block));
  const __m256i low4 = _mm256_set1_epi8(15);
  const __m256i lo = _mm256_and_si256(x, low4);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low4);
  return DotI4{{_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)}};
}
GPT2CPU_VEC_INLINE VI vdot_i4(VI acc, const DotI4& w, int i, VI a4) {
  return vdot_u8s8(acc, w.u[i], a4);
}

}  // namespace
}  // namespace gpt2cpu
