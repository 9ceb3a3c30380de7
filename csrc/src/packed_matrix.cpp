#include "gpt2cpu/packed_matrix.h"

#include <omp.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <cstring>
#include <stdexcept>
#include <string>

#include "gpt2cpu/buffer.h"
#include "gpt2cpu/kernel_table.h"
#include "gpt2cpu/quantize.h"

namespace gpt2cpu {

void PackedMatrix::encode_rows(int64_t p, int64_t r0, int64_t rows, const float* f) const {
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
      float inv[kPanel];
      for (int64_t r = r0; r < r0 + rows; r += g) {
        const int64_t n_rows = r0 + rows - r < g ? r0 + rows - r : g;
        const float* fg = f + (r - r0) * kPanel;
        group_scales(type, fg, n_rows, s + (r / g) * kPanel, inv);
        for (int64_t i = 0; i < n_rows; ++i) {
          for (int64_t j = 0; j < kPanel; ++j) {
            q[i * kPanel + j] = clamp_level(type, round_even(fg[i * kPanel + j] * inv[j]));
          }
        }
        // Rows past k (padding the last block) hold q = 0.
        const int64_t padded = (n_rows + kDotRows - 1) / kDotRows * kDotRows;
        for (int64_t i = n_rows * kPanel; i < padded * kPanel; ++i) q[i] = 0;
        const int64_t block_bytes = kDotRows * kPanel * info(type).bits / 8;
        for (int64_t b = 0; b < padded / kDotRows; ++b) {
          store_block(type, q + b * kDotRows * kPanel, dst + (r / kDotRows + b) * block_bytes);
        }
      }
      return;
    }
  }
}

void encode_rows_reference(const PackedMatrix& m, int64_t p, int64_t r0, int64_t rows,
                           const float* f) {
  m.encode_rows(p, r0, rows, f);
}

// Both packers split the work by panel, so each thread writes (and first-touches) its own
// contiguous part of the destination, gathering the panel's float32 form (k, kPanel) into
// a buffer of its own first. gather(p, cols, f): f = columns [p * kPanel, + cols) of W,
// zero past cols. The buffers are allocated before the region: nothing may throw in it.
template <class Gather>
void PackedMatrix::pack_panels(int threads, Gather gather) {
  const size_t panel_floats = static_cast<size_t>(k * kPanel);
  Buffer scratch(panel_floats * static_cast<size_t>(threads));
  const KernelTable& kt = kernels();
#pragma omp parallel num_threads(threads)
  {
    float* f = scratch.data() + panel_floats * static_cast<size_t>(omp_get_thread_num());
#pragma omp for schedule(static)
    for (int64_t p = 0; p < panels(); ++p) {
      const int64_t cols = n - p * kPanel < kPanel ? n - p * kPanel : kPanel;
      gather(p * kPanel, cols, f);
      kt.encode_rows(*this, p, 0, k, f);
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
