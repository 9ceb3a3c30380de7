#include <omp.h>

#include "gpt2cpu/kernels.h"
#include "gpt2cpu/ops.h"

namespace gpt2cpu {

namespace {
// Rows of the input handled together: a block of them (row_block x k floats) stays in L2
// while every weight panel streams past it. A multiple of kGemmRows.
constexpr int64_t kRowBlock = 16 * kGemmRows;
}  // namespace

void matmul(float* out, int64_t ldo, const float* inp, int64_t ldi, int64_t t,
            const PackedMatrix& w, const float* bias, Accumulate acc, int threads) {
  const KernelTable& kt = kernels();
  const int64_t panels = w.panels();
#pragma omp parallel num_threads(threads)
  {
    alignas(64) float tile[kGemmRows * kPanel];
    for (int64_t r0 = 0; r0 < t; r0 += kRowBlock) {
      const int64_t r1 = r0 + kRowBlock < t ? r0 + kRowBlock : t;
      // Row blocks write disjoint outputs, so threads need not wait for each other.
#pragma omp for schedule(static) nowait
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t col0 = p * kPanel;
        const int64_t cols = w.n - col0 < kPanel ? w.n - col0 : kPanel;
        const float* panel = w.panel(p);
        for (int64_t r = r0; r < r1; r += kGemmRows) {
          const int64_t m = r1 - r < kGemmRows ? r1 - r : kGemmRows;
          for (int64_t i = 0; i < m; ++i) {
            float* row = out + (r + i) * ldo + col0;
            for (int64_t j = 0; j < kPanel; ++j) {
              float init = 0.0f;
              if (j < cols) {
                if (acc == Accumulate::Yes) init = row[j];
                if (bias != nullptr) init += bias[col0 + j];
              }
              tile[i * kPanel + j] = init;
            }
          }
          kt.gemm_tile(m, w.k, inp + r * ldi, ldi, panel, tile, kPanel);
          for (int64_t i = 0; i < m; ++i) {
            float* row = out + (r + i) * ldo + col0;
            for (int64_t j = 0; j < cols; ++j) row[j] = tile[i * kPanel + j];
          }
        }
      }
    }
  }
}

}  // namespace gpt2cpu
