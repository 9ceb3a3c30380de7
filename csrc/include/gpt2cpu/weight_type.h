#pragma once
// The types a weight matrix can be stored in, one row of traits each, and the scalar
// conversions packing uses. Adding a type means a row here, an encoder in
// packed_matrix.cpp and a row loader in each vector layer (src/simd/): the kernels are
// written once over those loaders (src/kernels/weight_kernels.inc).

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

namespace gpt2cpu {

enum class WeightType : uint8_t { F32 = 0, BF16, F16, I8, I4 };
constexpr int kWeightTypes = 5;

struct WeightTypeInfo {
  WeightType type;
  const char* name;     // as users spell it: from_pretrained(dtype=...)
  int bits;             // per stored weight
  int64_t group_rows;   // rows of k sharing one scale per output; 0: no scales
  bool integer;         // products in integer arithmetic, on activations quantized to int8
};

// Integer types: symmetric, one float scale per output and group of rows along k, and the
// activations quantized per row and group likewise (packed_matrix.h has the layout). int8
// keeps 7 bits of each group's range; 128 rows per group cost 0.25 bits a weight, and
// halve the float epilogues of 64 (a 16-row product ran 11% faster, docs/precisions.md).
// int4 needs smaller groups (32 rows, as q4_0) so that a group's largest weight does not
// flatten the others.
constexpr WeightTypeInfo kWeightTypeInfo[kWeightTypes] = {
    {WeightType::F32, "float32", 32, 0, false},
    {WeightType::BF16, "bfloat16", 16, 0, false},
    {WeightType::F16, "float16", 16, 0, false},
    {WeightType::I8, "int8", 8, 128, true},
    {WeightType::I4, "int4", 4, 32, true},
};

// Rows an integer product sums in one step per output (a VNNI instruction's four bytes):
// integer types store k in blocks of this many rows, interleaved, zero-padded past k.
constexpr int64_t kDotRows = 4;

inline const WeightTypeInfo& info(WeightType t) { return kWeightTypeInfo[static_cast<int>(t)]; }

// The type named `name`; throws std::invalid_argument listing the valid names.
WeightType weight_type_named(const std::string& name);

// IEEE binary16 and bfloat16 from float32, rounding to nearest even (NaN stays NaN), and back.
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  // Branch-free (a select), so that packing loops vectorise.
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

inline float bf16_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// x rounded to the nearest integer, ties to even, for |x| <= 2^22: std::nearbyint's result
// without its library call, which the compiler cannot vectorise at the baseline ISA (the
// quantizers round every weight at load and every input of an integer product).
inline float round_even(float x) {
  const float magic = std::copysign(12582912.0f, x);  // 1.5 * 2^23: no fraction bits left
  return (x + magic) - magic;
}

uint16_t float_to_f16(float f);
// out[i] = float_to_f16(in[i]), the same bits, vectorised.
void floats_to_f16(const float* in, uint16_t* out, int64_t n);
float f16_to_float(uint16_t h);

}  // namespace gpt2cpu
