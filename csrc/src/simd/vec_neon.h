#pragma once
// The vector layer for aarch64's Advanced SIMD (NEON): 4 float lanes in a float32x4_t, so
// a 16-float panel row is four vectors. NEON is part of the aarch64 baseline; the optional
// extensions (dotprod, bf16, i8mm) are for typed weights and are detected at run time.
// Everything is in an anonymous namespace, so no other set's code can stand in for it.

#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#define GPT2CPU_VEC_INLINE inline __attribute__((always_inline))

namespace gpt2cpu {
namespace {

constexpr int kLanes = 4;
using VF = float32x4_t;

GPT2CPU_VEC_INLINE VF vzero() { return vdupq_n_f32(0.0f); }
GPT2CPU_VEC_INLINE VF vset1(float s) { return vdupq_n_f32(s); }
GPT2CPU_VEC_INLINE VF vload(const float* p) { return vld1q_f32(p); }
GPT2CPU_VEC_INLINE void vstore(float* p, VF a) { vst1q_f32(p, a); }
GPT2CPU_VEC_INLINE VF vadd(VF a, VF b) { return vaddq_f32(a, b); }
GPT2CPU_VEC_INLINE VF vsub(VF a, VF b) { return vsubq_f32(a, b); }
GPT2CPU_VEC_INLINE VF vmul(VF a, VF b) { return vmulq_f32(a, b); }
GPT2CPU_VEC_INLINE VF vdiv(VF a, VF b) { return vdivq_f32(a, b); }
// The number where one is NaN, as x86's max and min give their second operand: the
// kernels clamp with them and must not turn a clamp into NaN.
GPT2CPU_VEC_INLINE VF vmax(VF a, VF b) { return vmaxnmq_f32(a, b); }
GPT2CPU_VEC_INLINE VF vmin(VF a, VF b) { return vminnmq_f32(a, b); }
GPT2CPU_VEC_INLINE VF vfma(VF a, VF b, VF c) { return vfmaq_f32(c, a, b); }
// c - a * b
GPT2CPU_VEC_INLINE VF vfnma(VF a, VF b, VF c) { return vfmsq_f32(c, a, b); }
GPT2CPU_VEC_INLINE VF vround(VF a) { return vrndnq_f32(a); }
// 2^n for whole n in [-126, 127].
GPT2CPU_VEC_INLINE VF vpow2i(VF n) {
  return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23));
}
// x where a >= b, else 0 (0 also where either is NaN).
GPT2CPU_VEC_INLINE VF vkeep_ge(VF x, VF a, VF b) {
  return vreinterpretq_f32_u32(vandq_u32(vcgeq_f32(a, b), vreinterpretq_u32_f32(x)));
}
// x where a != b, else 0 (0 also where either is NaN).
GPT2CPU_VEC_INLINE VF vkeep_ne(VF x, VF a, VF b) {
  const uint32x4_t ne = vorrq_u32(vcltq_f32(a, b), vcgtq_f32(a, b));
  return vreinterpretq_f32_u32(vandq_u32(ne, vreinterpretq_u32_f32(x)));
}
GPT2CPU_VEC_INLINE float vhsum(VF v) { return vaddvq_f32(v); }
GPT2CPU_VEC_INLINE float vhmax(VF v) { return vmaxnmvq_f32(v); }
// out[0..3] = the sums of a, b, c and d, by pairwise adds.
GPT2CPU_VEC_INLINE void vhsum4(VF a, VF b, VF c, VF d, float* out) {
  vst1q_f32(out, vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d)));
}
// Lane j = the sum of v[j]'s lanes, for v[0..kLanes): a transpose-add tree, no
// per-vector horizontal sum.
GPT2CPU_VEC_INLINE VF vhsum_lanes(const VF* v) {
  return vpaddq_f32(vpaddq_f32(v[0], v[1]), vpaddq_f32(v[2], v[3]));
}

// kLanes running sums in double.
struct VD {
  float64x2_t lo, hi;
};
GPT2CPU_VEC_INLINE VD vdzero() { return VD{vdupq_n_f64(0.0), vdupq_n_f64(0.0)}; }
GPT2CPU_VEC_INLINE VD vdadd(VD acc, VF x) {
  return VD{vaddq_f64(acc.lo, vcvt_f64_f32(vget_low_f32(x))),
            vaddq_f64(acc.hi, vcvt_high_f64_f32(x))};
}
GPT2CPU_VEC_INLINE double vdsum(VD acc) { return vaddvq_f64(vaddq_f64(acc.lo, acc.hi)); }

GPT2CPU_VEC_INLINE void vtranspose4x4(VF& r0, VF& r1, VF& r2, VF& r3) {
  const VF t0 = vtrn1q_f32(r0, r1), t1 = vtrn2q_f32(r0, r1);
  const VF t2 = vtrn1q_f32(r2, r3), t3 = vtrn2q_f32(r2, r3);
  const auto d = [](VF v) { return vreinterpretq_f64_f32(v); };
  r0 = vreinterpretq_f32_f64(vtrn1q_f64(d(t0), d(t2)));
  r1 = vreinterpretq_f32_f64(vtrn1q_f64(d(t1), d(t3)));
  r2 = vreinterpretq_f32_f64(vtrn2q_f64(d(t0), d(t2)));
  r3 = vreinterpretq_f32_f64(vtrn2q_f64(d(t1), d(t3)));
}

// dst (8 rows, stride ldd) = the 8x8 block at src (stride lds) transposed, src's rows past
// kRows read as zeros (and never touched): four 4x4 transposes.
template <int kRows>
GPT2CPU_VEC_INLINE void vtranspose8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  VF r[8][2];
  for (int i = 0; i < 8; ++i) {
    r[i][0] = i < kRows ? vld1q_f32(src + i * lds) : vzero();
    r[i][1] = i < kRows ? vld1q_f32(src + i * lds + 4) : vzero();
  }
  for (int bi = 0; bi < 2; ++bi) {    // block row: source rows 4 bi .. 4 bi + 3
    for (int bj = 0; bj < 2; ++bj) {  // block column: source columns 4 bj .. 4 bj + 3
      VF a = r[4 * bi][bj], b = r[4 * bi + 1][bj], c = r[4 * bi + 2][bj], e = r[4 * bi + 3][bj];
      vtranspose4x4(a, b, c, e);
      float* o = dst + 4 * bj * ldd + 4 * bi;
      vst1q_f32(o, a);
      vst1q_f32(o + ldd, b);
      vst1q_f32(o + 2 * ldd, c);
      vst1q_f32(o + 3 * ldd, e);
    }
  }
}

GPT2CPU_VEC_INLINE VF vload_bf16(const uint16_t* p) {
  return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}
// kLanes int8 values (an int8 KV cache's) widened to float, exactly.
GPT2CPU_VEC_INLINE VF vload_i8(const int8_t* p) {
  int32_t four;
  std::memcpy(&four, p, sizeof(four));
  const int8x8_t bytes = vreinterpret_s8_s32(vdup_n_s32(four));
  return vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(bytes))));
}
GPT2CPU_VEC_INLINE VF vload_f16(const uint16_t* p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}
GPT2CPU_VEC_INLINE void vprefetch_l2(const void* p) { __builtin_prefetch(p, 0, 2); }
GPT2CPU_VEC_INLINE void vprefetch_l1(const void* p) { __builtin_prefetch(p, 0, 3); }
// kLanes whole numbers in [-127, 127] (as floats) stored as int8: an integer product's
// quantized input.
GPT2CPU_VEC_INLINE void vstore_i8(int8_t* p, VF a) {
  const int16x4_t h = vmovn_s32(vcvtnq_s32_f32(a));
  const int8x8_t b = vmovn_s16(vcombine_s16(h, h));
  const int32_t four = vget_lane_s32(vreinterpret_s32_s8(b), 0);
  std::memcpy(p, &four, 4);
}


// Integer dot products for the integer weight types (see vec_avx2.h): 4 int32 lanes, one
// output each, so a block row of 16 outputs is 4 vectors. Baseline NEON has no 4-way byte
// dot product (vdotq_s32 is the optional dotprod extension): widening multiplies of the
// signed bytes, then two pairwise additions to the 4 sums a lane. Exact: |q| <= 127.
using VI = int32x4_t;
GPT2CPU_VEC_INLINE VI vizero() { return vdupq_n_s32(0); }
GPT2CPU_VEC_INLINE VI vset1_i32(int32_t x) { return vdupq_n_s32(x); }
GPT2CPU_VEC_INLINE VI vsub_i32(VI a, VI b) { return vsubq_s32(a, b); }
GPT2CPU_VEC_INLINE VF vcvt_i32(VI a) { return vcvtq_f32_s32(a); }
GPT2CPU_VEC_INLINE VI vbcast4(const int8_t* a) {
  int32_t x;
  std::memcpy(&x, a, 4);
  return vdupq_n_s32(x);
}

// lanes j of acc += the sum of the 4 products of w's bytes 4j..4j+3 with a4's 4 bytes.
GPT2CPU_VEC_INLINE VI vdot4_s8(VI acc, int8x16_t w, VI a4) {
  const int8x16_t a = vreinterpretq_s8_s32(a4);
  const int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(a)));
  const int32x4_t hi = vpaddlq_s16(vmull_high_s8(w, a));
  return vaddq_s32(acc, vpaddq_s32(lo, hi));
}

constexpr int32_t kDotOffsetI8 = 0;
constexpr int32_t kDotOffsetI4 = 8;

struct DotI8 {
  int8x16_t s[4];  // the weights as signed bytes (the stored offset-binary, 0x80 flipped)
};
GPT2CPU_VEC_INLINE DotI8 vprep_i8(const uint8_t* block) {
  DotI8 w;
  for (int i = 0; i < 4; ++i) {
    w.s[i] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(block + 16 * i), vdupq_n_u8(0x80)));
  }
  return w;
}
GPT2CPU_VEC_INLINE VI vdot_i8(VI acc, const DotI8& w, int i, VI a4) {
  return vdot4_s8(acc, w.s[i], a4);
}

struct DotI4 {
  int8x16_t u[4];  // q + 8 in [0, 15]: outputs 0-3, 4-7 (low nibbles), 8-11, 12-15 (high)
};
GPT2CPU_VEC_INLINE DotI4 vprep_i4(const uint8_t* block) {
  const uint8x16_t x0 = vld1q_u8(block), x1 = vld1q_u8(block + 16), low4 = vdupq_n_u8(15);
  return DotI4{{vreinterpretq_s8_u8(vandq_u8(x0, low4)), vreinterpretq_s8_u8(vandq_u8(x1, low4)),
                vreinterpretq_s8_u8(vshrq_n_u8(x0, 4)), vreinterpretq_s8_u8(vshrq_n_u8(x1, 4))}};
}
GPT2CPU_VEC_INLINE VI vdot_i4(VI acc, const DotI4& w, int i, VI a4) {
  return vdot4_s8(acc, w.u[i], a4);
}

}  // namespace
}  // namespace gpt2cpu
