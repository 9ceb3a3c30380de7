#include "gpt2cpu/packed_matrix.h"

#include <omp.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <cstring>
#include <stdexcept>
#include <string>

#include "gpt2cpu/buffer.h"

namespace gpt2cpu {

namespace {

constexpr int64_t kMaxGroupRows = 64;
static_assert(kWeightTypeInfo[static_cast<int>(WeightType::I8)].group_rows <= kMaxGroupRows &&
                  kWeightTypeInfo[static_cast<int>(WeightType::I4)].group_rows <= kMaxGroupRows,
              "a group's quantized values fit encode_rows's buffer");

// The quantizers: symmetric, one scale per output and group of rows.
//  - int8: scale = max|w| / 127, q = round(w / scale).
//  - int4: as llama.cpp's q4_0, the group's largest-magnitude weight m maps to -8 exactly
//    (scale = m / -8), so all 16 levels are used and that weight is exact; the others are
//    rounded and clamped into [-8, 7] (absmax / 7 would leave one level unused).
// f: (rows, kPanel) float32, one group; q: its quantized values; scale: kPanel floats.
void quantize_group(WeightType type, const float* f, int64_t rows, int8_t* q, float* scale) {
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
  bool finite[kPanel];
  for (int64_t j = 0; j < kPanel; ++j) finite[j] = non_finite[j] == 0.0f;
  const bool i8 = type == WeightType::I8;
  const float lo = i8 ? -127.0f : -8.0f, hi = i8 ? 127.0f : 7.0f;
  float inv[kPanel];
  for (int64_t j = 0; j < kPanel; ++j) {
    const float s = i8 ? magnitude[j] / 127.0f : extreme[j] / -8.0f;
    // A NaN or infinite weight makes its group's scale NaN: every output it feeds is NaN,
    // as in float32, instead of a silently rounded number.
    scale[j] = finite[j] ? s : std::numeric_limits<float>::quiet_NaN();
    inv[j] = finite[j] && s != 0.0f ? 1.0f / s : 0.0f;
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < kPanel; ++j) {
      const float v = round_even(f[r * kPanel + j] * inv[j]);
      // NaN (an infinite weight times 0) goes to lo: any value will do under a NaN scale.
      q[r * kPanel + j] = static_cast<int8_t>(v > lo ? (v < hi ? v : hi) : lo);
    }
  }
}

}  // namespace

void PackedMatrix::encode_rows(int64_t p, int64_t r0, int64_t rows, const float* f) {
  uint8_t* dst = data + p * panel_bytes();
  const int64_t count = rows * kPanel;
  switch (type) {
    case WeightType::F32:
      std::memcpy(dst + r0 * kPanel * 4, f, static_cast<size_t>(count) * 4);
      return;
    case WeightType::BF16:
    case WeightType::F16: {
      uint16_t* h = reinterpret_cast<uint16_t*>(dst) + r0 * kPanel;
      if (type == WeightType::F16) {
        floats_to_f16(f, h, count);
      } else {
        for (int64_t i = 0; i < count; ++i) h[i] = float_to_bf16(f[i]);
      }
      return;
    }
    case WeightType::I8:
    case WeightType::I4: {
      const int64_t g = group_rows();
      float* s = scales + p * groups() * kPanel;
      int8_t q[kMaxGroupRows * kPanel];
      for (int64_t r = r0; r < r0 + rows; r += g) {
        const int64_t n_rows = r0 + rows - r < g ? r0 + rows - r : g;
        quantize_group(type, f + (r - r0) * kPanel, n_rows, q, s + (r / g) * kPanel);
        // Rows past k (padding the last block) hold q = 0.
        const int64_t padded = (n_rows + kDotRows - 1) / kDotRows * kDotRows;
        for (int64_t i = n_rows * kPanel; i < padded * kPanel; ++i) q[i] = 0;
        for (int64_t b = 0; b < padded / kDotRows; ++b) {
          const int8_t* rows4 = q + b * kDotRows * kPanel;
          if (type == WeightType::I8) {
            uint8_t* block = dst + (r + b * kDotRows) * kPanel;
            for (int64_t j = 0; j < kPanel; ++j) {
              for (int64_t t = 0; t < kDotRows; ++t) {
                block[j * kDotRows + t] = static_cast<uint8_t>(rows4[t * kPanel + j] + 128);
              }
            }
          } else {
            uint8_t* block = dst + (r + b * kDotRows) * kPanel / 2;
            uint8_t u[kDotRows * kPanel];
            for (int64_t j = 0; j < kPanel; ++j) {
              for (int64_t t = 0; t < kDotRows; ++t) {
                u[j * kDotRows + t] = static_cast<uint8_t>(rows4[t * kPanel + j] + 8);
              }
            }
            for (int64_t i = 0; i < kDotRows * kPanel / 2; ++i) {
              block[i] = static_cast<uint8_t>(u[i] | (u[i + kDotRows * kPanel / 2] << 4));
            }
          }
        }
      }
      return;
    }
  }
}

// Both packers split the work by panel, so each thread writes (and first-touches) its own
// contiguous part of the destination, gathering the panel's float32 form (k, kPanel) into
// a buffer of its own first. gather(p, cols, f): f = columns [p * kPanel, + cols) of W,
// zero past cols. The buffers are allocated before the region: nothing may throw in it.
template <class Gather>
void PackedMatrix::pack_panels(int threads, Gather gather) {
  const size_t panel_floats = static_cast<size_t>(k * kPanel);
  Buffer scratch(panel_floats * static_cast<size_t>(threads));
#pragma omp parallel num_threads(threads)
  {
    float* f = scratch.data() + panel_floats * static_cast<size_t>(omp_get_thread_num());
#pragma omp for schedule(static)
    for (int64_t p = 0; p < panels(); ++p) {
      const int64_t cols = n - p * kPanel < kPanel ? n - p * kPanel : kPanel;
      gather(p * kPanel, cols, f);
      encode_rows(p, 0, k, f);
    }
  }
}

void PackedMatrix::pack_from_k_by_n(const float* w, int threads) {
  pack_panels(threads, [&](int64_t col0, int64_t cols, float* f) {
    for (int64_t r = 0; r < k; ++r) {
      float* row = f + r * kPanel;
      std::memcpy(row, w + r * n + col0, static_cast<size_t>(cols) * 4);
      for (int64_t j = cols; j < kPanel; ++j) row[j] = 0.0f;
    }
  });
}

void PackedMatrix::pack_from_n_by_k(const float* wt, int threads) {
  pack_panels(threads, [&](int64_t col0, int64_t cols, float* f) {
    for (int64_t j = 0; j < kPanel; ++j) {
      if (j >= cols) {  // past n: no source row to point at
        for (int64_t r = 0; r < k; ++r) f[r * kPanel + j] = 0.0f;
        continue;
      }
      const float* src = wt + (col0 + j) * k;
      for (int64_t r = 0; r < k; ++r) f[r * kPanel + j] = src[r];
    }
  });
}

float PackedMatrix::at(int64_t r, int64_t j) const {
  const int64_t c = j % kPanel;
  const uint8_t* src = panel(j / kPanel);
  switch (type) {
    case WeightType::F32:
      return reinterpret_cast<const float*>(src)[r * kPanel + c];
    case WeightType::BF16:
      return bf16_to_float(reinterpret_cast<const uint16_t*>(src)[r * kPanel + c]);
    case WeightType::F16:
      return f16_to_float(reinterpret_cast<const uint16_t*>(src)[r * kPanel + c]);
    case WeightType::I8:
    case WeightType::I4: {
      const float scale = panel_scales(j / kPanel)[(r / group_rows()) * kPanel + c];
      const int64_t block = r / kDotRows, u = c * kDotRows + r % kDotRows;
      int q;
      if (type == WeightType::I8) {
        q = static_cast<int>(src[block * kDotRows * kPanel + u]) - 128;
      } else {
        constexpr int64_t kHalf = kDotRows * kPanel / 2;
        const uint8_t byte = src[block * kHalf + u % kHalf];
        q = (u < kHalf ? byte & 15 : byte >> 4) - 8;
      }
      return static_cast<float>(q) * scale;
    }
  }
  return 0.0f;
}

void PackedMatrix::column(int64_t j, float* out) const {
  for (int64_t r = 0; r < k; ++r) out[r] = at(r, j);
}

PackedMatrix PackedMatrix::columns(int64_t first, int64_t count) const {
  const bool ok = first >= 0 && count >= 0 && first + count <= n && first % kPanel == 0 &&
                  (count % kPanel == 0 || first + count == n);
  if (!ok) {
    throw std::out_of_range("columns [" + std::to_string(first) + ", " +
                            std::to_string(first + count) + ") of a packed matrix with " +
                            std::to_string(n) + " columns do not start and end on panels");
  }
  PackedMatrix view = *this;
  view.data = data + (first / kPanel) * panel_bytes();
  view.scales = scales != nullptr ? scales + (first / kPanel) * groups() * kPanel : nullptr;
  view.n = count;
  return view;
}

}  // namespace gpt2cpu
