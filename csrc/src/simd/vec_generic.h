#pragma once
// The vector layer for any CPU: a "vector" of 8 floats as a plain array, compiled with the
// baseline flags, which the compiler maps onto whatever SIMD the baseline has (SSE2 on
// x86-64). Same interface as vec_avx2.h and vec_avx512.h; everything is in an anonymous
// namespace, so no other set's code can stand in for it at link time.

#include <cmath>
#include <cstdint>
#include <cstring>

#include "gpt2cpu/weight_type.h"

#define GPT2CPU_VEC_INLINE inline __attribute__((always_inline))

namespace gpt2cpu {
namespace {

constexpr int kLanes = 8;
struct VF {
  float x[kLanes];
};

GPT2CPU_VEC_INLINE VF vzero() { return VF{}; }
GPT2CPU_VEC_INLINE VF vset1(float s) {
  VF r;
  for (int i = 0; i < kLanes; ++i) r.x[i] = s;
  return r;
}
GPT2CPU_VEC_INLINE VF vload(const float* p) {
  VF r;
  for (int i = 0; i < kLanes; ++i) r.x[i] = p[i];
  return r;
}
GPT2CPU_VEC_INLINE void vstore(float* p, VF a) {
  for (int i = 0; i < kLanes; ++i) p[i] = a.x[i];
}
#define GPT2CPU_VEC_BINARY(name, expr)              \
  GPT2CPU_VEC_INLINE VF name(VF a, VF b) {          \
    VF r;                                           \
    for (int i = 0; i < kLanes; ++i) r.x[i] = expr; \
    return r;                                       \
  }
GPT2CPU_VEC_BINARY(vadd, a.x[i] + b.x[i])
GPT2CPU_VEC_BINARY(vsub, a.x[i] - b.x[i])
GPT2CPU_VEC_BINARY(vmul, a.x[i] * b.x[i])
GPT2CPU_VEC_BINARY(vdiv, a.x[i] / b.x[i])
GPT2CPU_VEC_BINARY(vmax, a.x[i] > b.x[i] ? a.x[i] : b.x[i])
GPT2CPU_VEC_BINARY(vmin, a.x[i] < b.x[i] ? a.x[i] : b.x[i])
#undef GPT2CPU_VEC_BINARY
// a * b + c. Not fused: the baseline has no FMA, and a software fma is a hundred times
// slower; each kernel set is tested against numpy with its own rounding.
GPT2CPU_VEC_INLINE VF vfma(VF a, VF b, VF c) {
  VF r;
  for (int i = 0; i < kLanes; ++i) r.x[i] = a.x[i] * b.x[i] + c.x[i];
  return r;
}
// c - a * b
GPT2CPU_VEC_INLINE VF vfnma(VF a, VF b, VF c) {
  VF r;
  for (int i = 0; i < kLanes; ++i) r.x[i] = c.x[i] - a.x[i] * b.x[i];
  return r;
}
GPT2CPU_VEC_INLINE VF vround(VF a) {
  VF r;
  for (int i = 0; i < kLanes; ++i) r.x[i] = std::nearbyint(a.x[i]);
  return r;
}
// 2^n for whole n in [-126, 127].
GPT2CPU_VEC_INLINE VF vpow2i(VF n) {
  VF r;
  for (int i = 0; i < kLanes; ++i) {
    const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n.x[i]) + 127) << 23;
    std::memcpy(&r.x[i], &bits, sizeof(float));
  }
  return r;
}
// x where a >= b, else 0 (0 also where either is NaN).
GPT2CPU_VEC_INLINE VF vkeep_ge(VF x, VF a, VF b) {
  VF r;
  for (int i = 0; i < kLanes; ++i) r.x[i] = a.x[i] >= b.x[i] ? x.x[i] : 0.0f;
  return r;
}
// x where a != b, else 0 (0 also where either is NaN).
GPT2CPU_VEC_INLINE VF vkeep_ne(VF x, VF a, VF b) {
  VF r;
  for (int i = 0; i < kLanes; ++i) {
    r.x[i] = (a.x[i] == a.x[i] && b.x[i] == b.x[i] && a.x[i] != b.x[i]) ? x.x[i] : 0.0f;
  }
  return r;
}
GPT2CPU_VEC_INLINE float vhsum(VF a) {
  return ((a.x[0] + a.x[4]) + (a.x[1] + a.x[5])) + ((a.x[2] + a.x[6]) + (a.x[3] + a.x[7]));
}
GPT2CPU_VEC_INLINE float vhmax(VF a) {
  float m = a.x[0];
  for (int i = 1; i < kLanes; ++i) m = a.x[i] > m ? a.x[i] : m;
  return m;
}
GPT2CPU_VEC_INLINE void vhsum4(VF a, VF b, VF c, VF d, float* out) {
  out[0] = vhsum(a);
  out[1] = vhsum(b);
  out[2] = vhsum(c);
  out[3] = vhsum(d);
}
// Lane j = the sum of v[j]'s lanes, for v[0..kLanes).
GPT2CPU_VEC_INLINE VF vhsum_lanes(const VF* v) {
  VF r;
  for (int j = 0; j < kLanes; ++j) r.x[j] = vhsum(v[j]);
  return r;
}

// kLanes running sums in double.
struct VD {
  double x[kLanes];
};
GPT2CPU_VEC_INLINE VD vdzero() { return VD{}; }
GPT2CPU_VEC_INLINE VD vdadd(VD acc, VF v) {
  for (int i = 0; i < kLanes; ++i) acc.x[i] += v.x[i];
  return acc;
}
GPT2CPU_VEC_INLINE double vdsum(VD a) {
  return ((a.x[0] + a.x[4]) + (a.x[1] + a.x[5])) + ((a.x[2] + a.x[6]) + (a.x[3] + a.x[7]));
}

// dst (8 rows, stride ldd) = the 8x8 block at src (stride lds) transposed, src's rows past
// kRows read as zeros (and never touched).
template <int kRows>
GPT2CPU_VEC_INLINE void vtranspose8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  for (int j = 0; j < 8; ++j) {
    for (int i = 0; i < 8; ++i) dst[j * ldd + i] = i < kRows ? src[i * lds + j] : 0.0f;
  }
}

// Widening loads of kLanes stored weights.
GPT2CPU_VEC_INLINE VF vload_bf16(const uint16_t* p) {
  VF r;
  for (int i = 0; i < kLanes; ++i) r.x[i] = bf16_to_float(p[i]);
  return r;
}
// kLanes int8 values (an int8 KV cache's) widened to float, exactly.
GPT2CPU_VEC_INLINE VF vload_i8(const int8_t* p) {
  VF r;
  for (int i = 0; i < kLanes; ++i) r.x[i] = static_cast<float>(p[i]);
  return r;
}
GPT2CPU_VEC_INLINE VF vload_f16(const uint16_t* p) {
  VF r;
  for (int i = 0; i < kLanes; ++i) r.x[i] = f16_to_float(p[i]);
  return r;
}
GPT2CPU_VEC_INLINE void vprefetch_l2(const void* p) { __builtin_prefetch(p, 0, 2); }
GPT2CPU_VEC_INLINE void vprefetch_l1(const void* p) { __builtin_prefetch(p, 0, 3); }
// kLanes whole numbers in [-127, 127] (as floats) stored as int8: an integer product's
// quantized input.
GPT2CPU_VEC_INLINE void vstore_i8(int8_t* p, VF a) {
  for (int i = 0; i < kLanes; ++i) p[i] = static_cast<int8_t>(a.x[i]);
}


// Integer dot products for the integer weight types (see vec_avx2.h), in plain C++.
struct VI {
  int32_t x[kLanes];
};
GPT2CPU_VEC_INLINE VI vizero() { return VI{}; }
GPT2CPU_VEC_INLINE VI vset1_i32(int32_t s) {
  VI r;
  for (int i = 0; i < kLanes; ++i) r.x[i] = s;
  return r;
}
GPT2CPU_VEC_INLINE VI vsub_i32(VI a, VI b) {
  VI r;
  for (int i = 0; i < kLanes; ++i) r.x[i] = a.x[i] - b.x[i];
  return r;
}
GPT2CPU_VEC_INLINE VF vcvt_i32(VI a) {
  VF r;
  for (int i = 0; i < kLanes; ++i) r.x[i] = static_cast<float>(a.x[i]);
  return r;
}
// The 4 activation bytes, in lanes 0-3 (the rest unused).
GPT2CPU_VEC_INLINE VI vbcast4(const int8_t* a) {
  VI r{};
  for (int t = 0; t < 4; ++t) r.x[t] = a[t];
  return r;
}

constexpr int32_t kDotOffsetI8 = 128;
constexpr int32_t kDotOffsetI4 = 8;

// A prepared block: the stored bytes, one per weight (int4 unpacked), output-major.
struct DotI8 {
  const uint8_t* bytes;
};
GPT2CPU_VEC_INLINE DotI8 vprep_i8(const uint8_t* block) { return DotI8{block}; }
GPT2CPU_VEC_INLINE VI vdot_i8(VI acc, const DotI8& w, int i, VI a4) {
  for (int l = 0; l < kLanes; ++l) {
    const uint8_t* wj = w.bytes + (i * kLanes + l) * 4;
    for (int t = 0; t < 4; ++t) acc.x[l] += static_cast<int32_t>(wj[t]) * a4.x[t];
  }
  return acc;
}

struct DotI4 {
  uint8_t u[64];
};
GPT2CPU_VEC_INLINE DotI4 vprep_i4(const uint8_t* block) {
  DotI4 w;
  for (int b = 0; b < 32; ++b) {
    w.u[b] = block[b] & 15;
    w.u[b + 32] = block[b] >> 4;
  }
  return w;
}
GPT2CPU_VEC_INLINE VI vdot_i4(VI acc, const DotI4& w, int i, VI a4) {
  for (int l = 0; l < kLanes; ++l) {
    const uint8_t* wj = w.u + (i * kLanes + l) * 4;
    for (int t = 0; t < 4; ++t) acc.x[l] += static_cast<int32_t>(wj[t]) * a4.x[t];
  }
  return acc;
}

}  // namespace
}  // namespace gpt2cpu
