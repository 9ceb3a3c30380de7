#pragma once
// A weight matrix W (k inputs, n outputs) stored in column panels of kPanel outputs:
// panel p holds W[0:k, p*kPanel : (p+1)*kPanel] row by row, zero-padded past n.
// Both kernels read it front to back: the one-token GEMV streams each panel once, and the
// GEMM's micro-kernel reads kPanel contiguous floats per input element.

#include <cstdint>

namespace gpt2cpu {

constexpr int64_t kPanel = 16;

struct PackedMatrix {
  float* data = nullptr;
  int64_t k = 0;  // inputs (rows of W)
  int64_t n = 0;  // outputs (columns of W)

  int64_t panels() const { return (n + kPanel - 1) / kPanel; }
  static int64_t storage(int64_t k, int64_t n) { return ((n + kPanel - 1) / kPanel) * k * kPanel; }
  const float* panel(int64_t p) const { return data + p * k * kPanel; }

  // Fill from W given as (k, n) row-major: Hugging Face Conv1D weights.
  void pack_from_k_by_n(const float* w, int threads = 1);
  // Fill from W^T given as (n, k) row-major: nn.Linear weights and the tied embedding.
  void pack_from_n_by_k(const float* wt, int threads = 1);
  // out (k) = W[:, j], i.e. row j of the (n, k) form: an embedding lookup on a tied head.
  void column(int64_t j, float* out) const;
  // W[:, first : first + count] as a matrix of its own, sharing this one's panels. first
  // must start a panel, and the range must end at a panel's end or at n: std::out_of_range.
  PackedMatrix columns(int64_t first, int64_t count) const;
};

}  // namespace gpt2cpu
