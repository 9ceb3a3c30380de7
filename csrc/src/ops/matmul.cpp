// out = [out +] inp @ W + bias, in two shapes of work:
//  - few rows (decode): memory-bound. Each weight panel is streamed once, by one thread,
//    straight through the register tile; nothing is packed.
//  - many rows (prompt): compute-bound. BLIS-style blocking: the input is packed into
//    kGemmRows-row micro-panels a block at a time (kRowBlock x kDepthBlock, kept in L2), and
//    each weight micro-panel (kDepthBlock x 16, kept in L1) is reused across the block.
#include <omp.h>

#include "gpt2cpu/buffer.h"
#include "gpt2cpu/kernels.h"
#include "gpt2cpu/ops.h"

namespace gpt2cpu {

namespace {

constexpr int64_t kDepthBlock = 256;             // 256 x 16 floats = 16 KiB of weights
constexpr int64_t kRowBlock = 20 * kGemmRows;    // 120 x 256 floats = 120 KiB of input
constexpr int64_t kBlockedMinRows = 2 * kGemmRows;

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// out rows [0, t) = [out +] bias: the starting value every K block accumulates onto.
void init_rows(float* row, int64_t n, const float* bias, Accumulate acc) {
  for (int64_t j = 0; j < n; ++j) {
    const float start = acc == Accumulate::Yes ? row[j] : 0.0f;
    row[j] = bias != nullptr ? start + bias[j] : start;
  }
}

void matmul_streaming(float* out, int64_t ldo, const float* inp, int64_t ldi, int64_t t,
                      const PackedMatrix& w, const float* bias, Accumulate acc, int threads) {
  const KernelTable& kt = kernels();
  const int64_t panels = w.panels();
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < panels; ++p) {
    alignas(64) float tile[kGemmRows * kPanel];
    const int64_t col0 = p * kPanel;
    const int64_t cols = min64(kPanel, w.n - col0);
    for (int64_t r = 0; r < t; r += kGemmRows) {
      const int64_t m = min64(kGemmRows, t - r);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < kPanel; ++j) tile[i * kPanel + j] = 0.0f;
        init_rows(tile + i * kPanel, cols, bias == nullptr ? nullptr : bias + col0, Accumulate::No);
        if (acc == Accumulate::Yes) {
          for (int64_t j = 0; j < cols; ++j) tile[i * kPanel + j] += out[(r + i) * ldo + col0 + j];
        }
      }
      kt.gemm_tile(m, w.k, inp + r * ldi, ldi, w.panel(p), tile, kPanel);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < cols; ++j) out[(r + i) * ldo + col0 + j] = tile[i * kPanel + j];
      }
    }
  }
}

// dst (kc, kGemmRows) = src rows [0, m) x columns [0, kc), transposed; rows past m are zero.
void pack_tile(float* dst, const float* src, int64_t ld, int64_t m, int64_t kc) {
  for (int64_t i = 0; i < kGemmRows; ++i) {
    const float* row = src + i * ld;
    if (i < m) {
      for (int64_t p = 0; p < kc; ++p) dst[p * kGemmRows + i] = row[p];
    } else {
      for (int64_t p = 0; p < kc; ++p) dst[p * kGemmRows + i] = 0.0f;
    }
  }
}

void matmul_blocked(float* out, int64_t ldo, const float* inp, int64_t ldi, int64_t t,
                    const PackedMatrix& w, const float* bias, Accumulate acc, int threads) {
  const KernelTable& kt = kernels();
  const int64_t panels = w.panels();
  Buffer packed(static_cast<size_t>(kRowBlock * kDepthBlock));  // shared by the team
  float* a_block = packed.data();
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < t; ++r) init_rows(out + r * ldo, w.n, bias, acc);

    alignas(64) float tile[kGemmRows * kPanel];
    for (int64_t p0 = 0; p0 < w.k; p0 += kDepthBlock) {
      const int64_t kc = min64(kDepthBlock, w.k - p0);
      for (int64_t r0 = 0; r0 < t; r0 += kRowBlock) {
        const int64_t mc = min64(kRowBlock, t - r0);
        const int64_t tiles = (mc + kGemmRows - 1) / kGemmRows;
#pragma omp for schedule(static)
        for (int64_t ti = 0; ti < tiles; ++ti) {
          const int64_t r = r0 + ti * kGemmRows;
          pack_tile(a_block + ti * kc * kGemmRows, inp + r * ldi + p0, ldi, min64(kGemmRows, t - r), kc);
        }
        // (the implicit barrier above: the block is packed before anyone reads it)
#pragma omp for schedule(static)
        for (int64_t p = 0; p < panels; ++p) {
          const float* b = w.panel(p) + p0 * kPanel;
          const int64_t col0 = p * kPanel;
          const int64_t cols = min64(kPanel, w.n - col0);
          for (int64_t ti = 0; ti < tiles; ++ti) {
            const int64_t m = min64(kGemmRows, mc - ti * kGemmRows);
            const float* a = a_block + ti * kc * kGemmRows;
            float* c = out + (r0 + ti * kGemmRows) * ldo + col0;
            if (m == kGemmRows && cols == kPanel) {
              kt.gemm_packed(kc, a, b, c, ldo);
              continue;
            }
            // A ragged edge: compute the full tile into scratch, keep the valid part.
            for (int64_t i = 0; i < kGemmRows; ++i) {
              for (int64_t j = 0; j < kPanel; ++j) {
                tile[i * kPanel + j] = (i < m && j < cols) ? c[i * ldo + j] : 0.0f;
              }
            }
            kt.gemm_packed(kc, a, b, tile, kPanel);
            for (int64_t i = 0; i < m; ++i) {
              for (int64_t j = 0; j < cols; ++j) c[i * ldo + j] = tile[i * kPanel + j];
            }
          }
        }
        // (and the one here: nobody repacks the block while it is still being read)
      }
    }
  }
}

}  // namespace

void matmul(float* out, int64_t ldo, const float* inp, int64_t ldi, int64_t t,
            const PackedMatrix& w, const float* bias, Accumulate acc, int threads) {
  if (t >= kBlockedMinRows) {
    matmul_blocked(out, ldo, inp, ldi, t, w, bias, acc, threads);
  } else {
    matmul_streaming(out, ldo, inp, ldi, t, w, bias, acc, threads);
  }
}

}  // namespace gpt2cpu
