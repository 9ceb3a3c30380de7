#pragma once
// The integer types' quantizer, shared by the reference encoder (PackedMatrix::encode_rows,
// built for the baseline ISA) and each kernel set's (src/isa/encode_kernels.inc): inline,
// so that each compiles it with its own flags. Symmetric, one scale per output and group
// of rows:
//  - int8: scale = max|w| / 127, q = round(w / scale).
//  - int4: as llama.cpp's q4_0, the group's largest-magnitude weight m maps to -8 exactly
//    (scale = m / -8), so all 16 levels are used and that weight is exact; the others are
//    rounded and clamped into [-8, 7] (absmax / 7 would leave one level unused).
// Nothing here multiplies and adds, so no compiler can fuse a rounding away. In an
// anonymous namespace, as the vector layers are: each includer keeps the copy built with
// its own flags, and the linker cannot hand the baseline code a wider set's.

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>

#include "gpt2cpu/packed_matrix.h"

namespace gpt2cpu {
namespace {

constexpr int64_t kMaxGroupRows = 128;
static_assert(kWeightTypeInfo[static_cast<int>(WeightType::I8)].group_rows <= kMaxGroupRows &&
                  kWeightTypeInfo[static_cast<int>(WeightType::I4)].group_rows <= kMaxGroupRows,
              "a group's quantized values fit the encoders' buffers");

// f: (rows, kPanel) float32, one group. Sets scale (kPanel floats) and inv, what each
// weight is multiplied by before rounding.
inline void group_scales(WeightType type, const float* f, int64_t rows, float* scale,
                         float* inv) {
  // Column-wise in lanes of kPanel: rows outer, so the compiler vectorises across columns.
  float extreme[kPanel] = {}, magnitude[kPanel] = {};  // the signed value of largest magnitude
  float non_finite[kPanel] = {};  // > 0 once a NaN or infinity was seen (kept a float: vectorises)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < kPanel; ++j) {
      const float v = f[r * kPanel + j], a = std::fabs(v);
      const bool larger = a > magnitude[j];
      magnitude[j] = larger ? a : magnitude[j];
      extreme[j] = larger ? v : extreme[j];
      non_finite[j] += a <= FLT_MAX ? 0.0f : 1.0f;
    }
  }
  const bool i8 = type == WeightType::I8;
  for (int64_t j = 0; j < kPanel; ++j) {
    const bool finite = non_finite[j] == 0.0f;
    const float s = i8 ? magnitude[j] / 127.0f : extreme[j] / -8.0f;
    // A NaN or infinite weight makes its group's scale NaN: every output it feeds is NaN,
    // as in float32, instead of a silently rounded number.
    scale[j] = finite ? s : std::numeric_limits<float>::quiet_NaN();
    inv[j] = finite && s != 0.0f ? 1.0f / s : 0.0f;
  }
}

// A rounded product as a stored value: clamped into the type's range. NaN (an infinite
// weight times 0) goes to the low end: any value will do under a NaN scale.
inline int8_t clamp_level(WeightType type, float v) {
  const float lo = type == WeightType::I8 ? -127.0f : -8.0f;
  const float hi = type == WeightType::I8 ? 127.0f : 7.0f;
  return static_cast<int8_t>(v > lo ? (v < hi ? v : hi) : lo);
}

// Rows [0, kDotRows) of q ((kDotRows, kPanel) levels) as one block of the packed layout
// (packed_matrix.h), as 32-bit words: output j's four rows side by side, in word j (int8)
// or, for int4, outputs j and j + 8 in the low and high nibbles of word j < 8.
inline void store_block(WeightType type, const int8_t* q, uint8_t* block) {
  uint32_t words[kPanel];
  if (type == WeightType::I8) {
    for (int64_t j = 0; j < kPanel; ++j) {
      uint32_t w = 0;
      for (int64_t t = 0; t < kDotRows; ++t) {
        w |= static_cast<uint32_t>(static_cast<uint8_t>(q[t * kPanel + j] + 128)) << (8 * t);
      }
      words[j] = w;
    }
    __builtin_memcpy(block, words, kPanel * 4);
    return;
  }
  for (int64_t j = 0; j < kPanel / 2; ++j) {
    uint32_t w = 0;
    for (int64_t t = 0; t < kDotRows; ++t) {
      const uint32_t low = static_cast<uint8_t>(q[t * kPanel + j] + 8);
      const uint32_t high = static_cast<uint8_t>(q[t * kPanel + j + kPanel / 2] + 8);
      w |= (low | high << 4) << (8 * t);
    }
    words[j] = w;
  }
  __builtin_memcpy(block, words, kPanel * 2);
}

}  // namespace
}  // namespace gpt2cpu
