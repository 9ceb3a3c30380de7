#pragma once
// What the AVX2 and AVX-512 vector layers share: code in 256-bit AVX registers, which both
// kernel sets' flags allow. Included by vec_avx2.h and vec_avx512.h after they define
// GPT2CPU_VEC_INLINE; in the same anonymous namespace, so each set compiles its own copy.

#include <immintrin.h>

#include <cstdint>

namespace gpt2cpu {
namespace {

// dst (8 rows, stride ldd) = the 8x8 block at src (stride lds) transposed, src's rows past
// kRows read as zeros (and never touched). AVX-512 does it in 256-bit registers too: a
// 16x16 transpose would need 16 rows, and a packed tile has fewer.
template <int kRows>
GPT2CPU_VEC_INLINE void vtranspose8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = i < kRows ? _mm256_loadu_ps(src + i * lds) : _mm256_setzero_ps();
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
    _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(s[i], s[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(s[i], s[i + 4], 0x31));
  }
}

}  // namespace
}  // namespace gpt2cpu
