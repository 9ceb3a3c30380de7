#include "gpt2cpu/packed_matrix.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace gpt2cpu {

// Both packers split the work by panel, so each thread writes (and first-touches) its own
// contiguous part of the destination.

void PackedMatrix::pack_from_k_by_n(const float* w, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < panels(); ++p) {
    const int64_t col0 = p * kPanel;
    const int64_t cols = n - col0 < kPanel ? n - col0 : kPanel;
    float* dst = data + p * k * kPanel;
    for (int64_t r = 0; r < k; ++r) {
      std::memcpy(dst + r * kPanel, w + r * n + col0, cols * sizeof(float));
    }
  }
}

void PackedMatrix::pack_from_n_by_k(const float* wt, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < panels(); ++p) {
    const int64_t col0 = p * kPanel;
    const int64_t cols = n - col0 < kPanel ? n - col0 : kPanel;
    float* dst = data + p * k * kPanel;
    for (int64_t j = 0; j < cols; ++j) {
      const float* src = wt + (col0 + j) * k;
      for (int64_t r = 0; r < k; ++r) dst[r * kPanel + j] = src[r];
    }
  }
}

void PackedMatrix::column(int64_t j, float* out) const {
  const float* src = data + (j / kPanel) * k * kPanel + (j % kPanel);
  for (int64_t r = 0; r < k; ++r) out[r] = src[r * kPanel];
}

PackedMatrix PackedMatrix::columns(int64_t first, int64_t count) const {
  const bool ok = first >= 0 && count >= 0 && first + count <= n && first % kPanel == 0 &&
                  (count % kPanel == 0 || first + count == n);
  if (!ok) {
    throw std::out_of_range("columns [" + std::to_string(first) + ", " +
                            std::to_string(first + count) + ") of a packed matrix with " +
                            std::to_string(n) + " columns do not start and end on panels");
  }
  PackedMatrix view;
  view.data = data + (first / kPanel) * k * kPanel;
  view.k = k;
  view.n = count;
  return view;
}

}  // namespace gpt2cpu
