// out = [out +] inp @ W + bias, in two shapes of work:
//  - few rows (decode): memory-bound. Threads split the weight panels; each panel is
//    streamed once straight through the register tile; nothing is packed. One row (a
//    decode step) reads kGemvPanels panels side by side: more reads in flight.
//  - many rows (prompt): compute-bound. Threads split the rows, and each runs a BLIS-style
//    blocked GEMM on its own: its input is packed into micro-panels of the kernel set's
//    gemm_rows rows a block at a time (about kRowBlock x kDepthBlock, kept in L2), and each
//    weight micro-panel (kDepthBlock x 16, kept in L1) is reused across the block. Nothing
//    is shared, so the threads never wait for each other until the end: on a busy machine
//    every barrier can cost a scheduler time slice.
#include "gpt2cpu/buffer.h"
#include "gpt2cpu/kernel_table.h"
#include "gpt2cpu/ops.h"

namespace gpt2cpu {

namespace {

constexpr int64_t kDepthBlock = 256;             // 256 x 16 floats = 16 KiB of weights
constexpr int64_t kRowBlock = 120;               // 120 x 256 floats = 120 KiB of input
// Rows from which the blocked path is used. It must not depend on the thread count: the
// paths sum in different orders at the edges, and seeded sampling promises the same tokens
// on any thread count, so the same bits.
constexpr int64_t kBlockedMinRows = 48;
static_assert(kTeamRows <= kBlockedMinRows, "a team cannot run the blocked path");

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// row (kPanel) = the panel's first `cols` bias values (zeros without a bias), zero past
// them: a tile row's starting value, or the bias of a last panel narrower than kPanel.
void padded_bias(float* row, const float* bias, int64_t cols) {
  for (int64_t j = 0; j < kPanel; ++j) row[j] = bias != nullptr && j < cols ? bias[j] : 0.0f;
}

// act: applied to each row of a tile before it is stored, or null.
void matmul_streaming(float* out, int64_t ldo, const float* inp, int64_t ldi, int64_t t,
                      const PackedMatrix& w, const float* bias, Accumulate acc,
                      const Activation* act, const Parallel& par) {
  const KernelTable& kt = par.kernels();
  const int64_t panels = w.panels();
  // Handed out in chunks, not split evenly up front: a thread that starts late (woken from
  // a passive wait, or descheduled) then takes a smaller share instead of making the others
  // wait for it. About 8 chunks per thread keep the handing-out cheap.
  // For one row, a whole number of gemv groups, so that only the matrix's last group can
  // be short.
  const int64_t chunks = 8 * static_cast<int64_t>(par.threads());
  const int64_t chunk = t == 1 ? (panels / chunks / kGemvPanels + 1) * kGemvPanels
                               : panels / chunks + 1;
  // Tile row i (kPanel floats) starts as [out row +] bias for the columns of panel p.
  auto start_row = [&](float* row, int64_t out_row, int64_t p) {
    const int64_t col0 = p * kPanel;
    const int64_t cols = min64(kPanel, w.n - col0);
    padded_bias(row, bias == nullptr ? nullptr : bias + col0, cols);
    if (acc == Accumulate::Yes) {
      for (int64_t j = 0; j < cols; ++j) row[j] += out[out_row * ldo + col0 + j];
    }
  };
  auto finish_row = [&](float* row, int64_t out_row, int64_t p) {
    const int64_t col0 = p * kPanel;
    const int64_t cols = min64(kPanel, w.n - col0);
    if (act != nullptr) activate_here(row, cols, *act, kt);
    for (int64_t j = 0; j < cols; ++j) out[out_row * ldo + col0 + j] = row[j];
  };
  // Panels [p0, p1) of the one row, a gemv group at a time.
  auto stream_row = [&](int64_t p0, int64_t p1, float* tile) {
    for (int64_t p = p0; p < p1; p += kGemvPanels) {
      const int64_t group = min64(kGemvPanels, p1 - p);
      for (int64_t q = 0; q < group; ++q) start_row(tile + q * kPanel, 0, p + q);
      kt.gemv(w.k, inp, w.panel(p), group, tile);
      for (int64_t q = 0; q < group; ++q) finish_row(tile + q * kPanel, 0, p + q);
    }
  };
  // Every row of panel p's columns, through the register tile.
  auto stream_panel = [&](int64_t p, float* tile) {
    for (int64_t r = 0; r < t; r += kt.gemm_rows) {
      const int64_t m = min64(kt.gemm_rows, t - r);
      for (int64_t i = 0; i < m; ++i) start_row(tile + i * kPanel, r + i, p);
      kt.gemm_tile(m, w.k, inp + r * ldi, ldi, w.panel(p), tile, kPanel);
      for (int64_t i = 0; i < m; ++i) finish_row(tile + i * kPanel, r + i, p);
    }
  };
  par.run([&](const Share& share) {
    alignas(64) float tile[kMaxGemmRows * kPanel];  // also holds a gemv group
    for (int64_t p0 = share.take(chunk); p0 < panels; p0 = share.take(chunk)) {
      const int64_t p1 = min64(p0 + chunk, panels);
      if (t == 1) {
        stream_row(p0, p1, tile);
      } else {
        for (int64_t p = p0; p < p1; ++p) stream_panel(p, tile);
      }
    }
  });
}

// gelu: apply gelu_new to the result as each tile's last depth block finishes.
void matmul_blocked(float* out, int64_t ldo, const float* inp, int64_t ldi, int64_t t,
                    const PackedMatrix& w, const float* bias, Accumulate acc, bool gelu,
                    const Parallel& par) {
  const KernelTable& kt = par.kernels();
  const int64_t panels = w.panels();
  const int64_t rows = kt.gemm_rows;
  const int64_t row_block = kRowBlock / rows * rows;
  const int64_t tiles = (t + rows - 1) / rows;
  // One packing block per thread, allocated here: nothing may throw in the parallel region
  // (and a team never gets here: it runs only appends of fewer than kTeamRows rows).
  const size_t block_floats = static_cast<size_t>(row_block * kDepthBlock);
  Buffer packed(block_floats * static_cast<size_t>(par.threads()));
  par.run([&](const Share& share) {
    // This thread's rows: a contiguous share of whole tiles.
    const int64_t row_begin = share.begin(tiles) * rows;
    const int64_t row_end = min64(t, share.end(tiles) * rows);
    float* a_block = packed.data() + block_floats * static_cast<size_t>(share.rank);
    alignas(64) float tile[kMaxGemmRows * kPanel];
    float edge_bias[kPanel];  // the bias of a last panel narrower than kPanel, zero-padded

    for (int64_t r0 = row_begin; r0 < row_end; r0 += row_block) {
      const int64_t mc = min64(row_block, row_end - r0);
      const int64_t block_tiles = (mc + rows - 1) / rows;
      for (int64_t p0 = 0; p0 < w.k; p0 += kDepthBlock) {
        const int64_t kc = min64(kDepthBlock, w.k - p0);
        // The first depth block starts each tile from [out +] bias; the rest add to it.
        const bool first = p0 == 0;
        TileEnd end;
        end.add_to_c = !first || acc == Accumulate::Yes;
        end.gelu_tanh = gelu && p0 + kc == w.k;
        // Each tile prefetches its share of the next panel's kc lines of weights.
        const int64_t lines_per_tile = (kc + block_tiles - 1) / block_tiles;
        for (int64_t ti = 0; ti < block_tiles; ++ti) {
          const int64_t r = r0 + ti * rows;
          kt.pack_tile(a_block + ti * kc * rows, inp + r * ldi + p0, ldi, min64(rows, row_end - r),
                       kc);
        }
        for (int64_t p = 0; p < panels; ++p) {
          const float* b = w.panel(p) + p0 * kPanel;
          const int64_t col0 = p * kPanel;
          const int64_t cols = min64(kPanel, w.n - col0);
          end.bias = first && bias != nullptr ? bias + col0 : nullptr;
          if (end.bias != nullptr && cols < kPanel) {
            padded_bias(edge_bias, end.bias, cols);
            end.bias = edge_bias;
          }
          // The next panel's block of weights (kc lines) is fetched into L2 a share per
          // tile, by the micro-kernel among its FMAs: its first tile would otherwise wait
          // on memory for all of it.
          const char* next_b = reinterpret_cast<const char*>(
              p + 1 < panels ? w.panel(p + 1) + p0 * kPanel : b);
          for (int64_t ti = 0; ti < block_tiles; ++ti) {
            const int64_t m = min64(rows, mc - ti * rows);
            const float* a = a_block + ti * kc * rows;
            float* c = out + (r0 + ti * rows) * ldo + col0;
            const int64_t first_line = min64(kc, ti * lines_per_tile);
            end.prefetch = next_b + first_line * 64;
            end.prefetch_lines = min64(kc, (ti + 1) * lines_per_tile) - first_line;
            if (m == rows && cols == kPanel) {
              kt.gemm_packed(kc, a, b, c, ldo, end);
              continue;
            }
            // A ragged edge: compute the full tile into scratch, keep the valid part.
            for (int64_t i = 0; i < rows; ++i) {
              for (int64_t j = 0; j < kPanel; ++j) {
                tile[i * kPanel + j] = (end.add_to_c && i < m && j < cols) ? c[i * ldo + j] : 0.0f;
              }
            }
            kt.gemm_packed(kc, a, b, tile, kPanel, end);
            for (int64_t i = 0; i < m; ++i) {
              for (int64_t j = 0; j < cols; ++j) c[i * ldo + j] = tile[i * kPanel + j];
            }
          }
        }
      }
    }
  });
}

}  // namespace

void matmul(float* out, int64_t ldo, const float* inp, int64_t ldi, int64_t t,
            const PackedMatrix& w, const float* bias, Accumulate acc, const Parallel& par) {
  if (t >= kBlockedMinRows && w.k > 0) {  // (k = 0: only the streaming path writes out)
    matmul_blocked(out, ldo, inp, ldi, t, w, bias, acc, /*gelu=*/false, par);
  } else {
    matmul_streaming(out, ldo, inp, ldi, t, w, bias, acc, /*act=*/nullptr, par);
  }
}

void matmul_activate(float* out, int64_t ldo, const float* inp, int64_t ldi, int64_t t,
                     const PackedMatrix& w, const float* bias, Activation act, const Parallel& par) {
  if (t < kBlockedMinRows || w.k == 0) {
    // Each tile row is activated as it is stored, not in a pass of its own, which in a
    // team would cost a barrier.
    matmul_streaming(out, ldo, inp, ldi, t, w, bias, Accumulate::No, &act, par);
    return;
  }
  // gelu_new is the one activation the GEMM kernels apply themselves.
  const bool in_kernel = act == Activation::GeluTanh;
  matmul_blocked(out, ldo, inp, ldi, t, w, bias, Accumulate::No, in_kernel, par);
  if (in_kernel) return;
  if (ldo == w.n) {
    activate(out, t * w.n, act, par);
  } else {
    for (int64_t r = 0; r < t; ++r) activate(out + r * ldo, w.n, act, par);
  }
}

}  // namespace gpt2cpu
