#include "gpt2cpu/weight_type.h"

#include <cmath>
#include <stdexcept>

namespace gpt2cpu {

WeightType weight_type_named(const std::string& name) {
  std::string valid;
  for (const auto& row : kWeightTypeInfo) {
    if (name == row.name) return row.type;
    valid += std::string(valid.empty() ? "" : ", ") + "'" + row.name + "'";
  }
  throw std::invalid_argument("unknown dtype '" + name + "'; valid dtypes: " + valid);
}

uint16_t float_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (abs < 0x38800000u) {
    // A subnormal half (or zero): scale into the integer range and round to nearest even.
    float a;
    std::memcpy(&a, &abs, 4);
    const float scaled = a * 16777216.0f;  // 2^24: one unit of the smallest subnormal
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
  }
  // A normal half: rebias the exponent and round the 13 dropped mantissa bits to even.
  uint32_t h = ((abs >> 13) - (112u << 10));
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

// Branch-free, so that the loop vectorises (F. Giesen's float_to_half_fast3_rtne, as
// selects): each case is computed for every value and the right one kept.
void floats_to_f16(const float* in, uint16_t* out, int64_t n) {
  constexpr uint32_t kInf = 255u << 23, kF16Max = (127u + 16u) << 23;
  constexpr uint32_t kDenormMagic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  float magic;
  std::memcpy(&magic, &kDenormMagic, 4);
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, in + i, 4);
    const uint32_t sign = u & 0x80000000u, a = u ^ sign;
    // Subnormal results: let the float adder round into the low mantissa bits.
    float af;
    std::memcpy(&af, &a, 4);
    const float sum = af + magic;
    uint32_t sub;
    std::memcpy(&sub, &sum, 4);
    sub -= kDenormMagic;
    // Normal results: rebias and round to nearest even on the 13 dropped bits.
    const uint32_t normal = (a + ((15u - 127u) << 23) + 0xfffu + ((a >> 13) & 1u)) >> 13;
    const uint32_t big = a > kInf ? 0x7e00u : 0x7c00u;
    const uint32_t h = a >= kF16Max ? big : (a < (113u << 23) ? sub : normal);
    out[i] = static_cast<uint16_t>(h | (sign >> 16));
  }
}

float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(man), -24);
    if (sign) f = -f;
    return f;
  }
  uint32_t u;
  if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 112u) << 23) | (man << 13);
  }
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace gpt2cpu
