// out = [out +] inp @ W + bias, in two shapes of work:
//  - few rows (decode), and every row count of an integer-typed W: threads split the
//    weight panels; each panel is streamed once straight through the register tile; the
//    weights are not packed. One row (a decode step) reads kGemvPanels panels side by side:
//    more reads in flight. Integer types quantize the input rows once first, float types
//    over several rows pack them once per thread (ProductRows).
//  - many rows (prompt) of a float type: compute-bound. Threads split the rows, and each
//    runs a BLIS-style blocked GEMM on its own: its input is packed into micro-panels of the
//    kernel set's gemm_rows rows a block at a time (about kRowBlock x kDepthBlock, kept in
//    L2), and each weight micro-panel (kDepthBlock x 16, kept in L1) is reused across the
//    block. Nothing is shared, so the threads never wait for each other until the end: on a
//    busy machine every barrier can cost a scheduler time slice.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "gpt2cpu/buffer.h"
#include "gpt2cpu/kernel_table.h"
#include "gpt2cpu/ops.h"

namespace gpt2cpu {

namespace {

// kDepthBlock (kernel_table.h): 256 x 16 floats = 16 KiB of weights
constexpr int64_t kRowBlock = 120;  // 120 x 256 floats = 120 KiB of input
// Bytes of packed input a depth span holds at most (see matmul_blocked): with a weight
// block and the output tiles, inside a 1 MiB L2.
constexpr int64_t kSpanBytes = int64_t{512} * 1024;
// Rows from which a float W takes the blocked path. Both paths sum each output the same
// way, so this is a matter of speed alone; it is the same for every kernel set.
constexpr int64_t kBlockedMinRows = 48;
static_assert(kTeamRows <= kBlockedMinRows, "a team cannot run the blocked path");

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// row (kPanel) = the panel's first `cols` bias values (zeros without a bias), zero past
// them: a tile row's starting value, or the bias of a last panel narrower than kPanel.
void padded_bias(float* row, const float* bias, int64_t cols) {
  for (int64_t j = 0; j < kPanel; ++j) row[j] = bias != nullptr && j < cols ? bias[j] : 0.0f;
}

// The layout of an integer product's quantized input in a block of memory: q (t, k4),
// then scale and sum (groups, t).
struct QuantizedLayout {
  int64_t k4, groups;
  size_t q_bytes, scale_bytes, total;
  QuantizedLayout(int64_t t, int64_t k, int64_t group)
      : k4((k + kDotRows - 1) / kDotRows * kDotRows),
        groups((k + group - 1) / group),
        q_bytes(static_cast<size_t>((t * k4 + 63) / 64 * 64)),
        scale_bytes(static_cast<size_t>(t * groups) * 4),
        total(q_bytes + 2 * scale_bytes) {}
};

// The largest group of any integer type: the layout with the most groups is the smallest
// group's, so sizes are taken over every integer type.
size_t quantized_bytes(int64_t t, int64_t k) {
  size_t most = 0;
  for (const auto& row : kWeightTypeInfo) {
    if (row.integer) {
      const size_t bytes = QuantizedLayout(t, k, row.group_rows).total;
      most = bytes > most ? bytes : most;
    }
  }
  return most;
}

// Where the quantized input lives in memory laid out as QuantizedLayout(t, k, group).
ProductRows quantized_view(int64_t t, int64_t k, int64_t group, void* memory) {
  const QuantizedLayout layout(t, k, group);
  uint8_t* base = static_cast<uint8_t*>(memory);
  ProductRows rows;
  rows.q = reinterpret_cast<int8_t*>(base);
  rows.ldq = layout.k4;
  rows.scale = reinterpret_cast<float*>(base + layout.q_bytes);
  rows.sum = reinterpret_cast<int32_t*>(base + layout.q_bytes + layout.scale_bytes);
  rows.ldg = t;
  return rows;
}

// The largest group of an integer type's input (quantize_rows' buffer), whose groups start
// on a 4-deep block.
constexpr int64_t kMaxInputGroup = 128;
constexpr bool input_groups_fit() {
  for (const auto& row : kWeightTypeInfo) {
    if (row.integer && (row.group_rows > kMaxInputGroup || row.group_rows % kDotRows != 0)) {
      return false;
    }
  }
  return true;
}
static_assert(input_groups_fit(), "see kMaxInputGroup");

// How matmul_streaming splits t rows into tiles of at most `most` rows: as few tiles as
// hold them, of balanced sizes (20 rows in 10 + 10, not 16 + 4: the weights are read once a
// tile, and a small tile is as slow for its panel as a full one). quantize_rows lays its
// rows out by the same tiles.
struct RowTiles {
  int64_t t, count;
  RowTiles(int64_t rows, int64_t most) : t(rows), count((rows + most - 1) / most) {}
  int64_t first(int64_t i) const { return t * i / count; }
  int64_t size(int64_t i) const { return first(i + 1) - first(i); }
  // The tile that holds row r: the rounding of first() can put r one tile off r's share.
  int64_t of(int64_t r) const {
    int64_t i = r * count / t;
    while (r >= first(i + 1)) ++i;
    while (r < first(i)) --i;
    return i;
  }
};

// This thread's share of rows [0, t) of inp quantized into `to` (a quantized_view), group
// by group (kt.quantize_group), zero past k, in the layout the integer kernels read
// (ProductRows::q): each tile of rows [r, r + m) (RowTiles) keeps its m rows' 4-deep
// blocks side by side, block b's at q + r * ldq + b * m * kDotRows.
void quantize_rows(const KernelTable& kt, const float* inp, int64_t ldi, int64_t t, int64_t k,
                   int64_t group, const ProductRows& to, const Share& share) {
  int8_t* q = const_cast<int8_t*>(to.q);
  float* scale = const_cast<float*>(to.scale);
  int32_t* sum = const_cast<int32_t*>(to.sum);
  const RowTiles tiles(t, kt.stream_rows);
  // Shares of whole groups, all rows of each: a tile's rows are interleaved 4 bytes apart,
  // so a cache line of a tile's block holds 16 rows' bytes, and shares of rows had both
  // threads writing every line (an int8 16-sequence step spent ~4% there). The scales and
  // sums are group-major for the same reason.
  const int64_t groups = (k + group - 1) / group;
  for (int64_t item = share.begin(groups) * t; item < share.end(groups) * t; ++item) {
    const int64_t g = item / t, r = item % t;
    const int64_t c0 = g * group, c1 = min64(c0 + group, k);
    const int64_t tile = tiles.of(r);
    const int64_t r0 = tiles.first(tile), m = tiles.size(tile);
    float* group_scale = scale + g * to.ldg + r;
    int32_t* group_sum = sum + g * to.ldg + r;
    if (m == 1) {
      int8_t* qr = q + r * to.ldq;
      kt.quantize_group(inp + r * ldi + c0, c1 - c0, qr + c0, group_scale, group_sum);
      if (g + 1 == groups) {
        for (int64_t c = k; c < to.ldq; ++c) qr[c] = 0;
      }
      continue;
    }
    int8_t x[kMaxInputGroup] = {};  // zero past k, to the block's end
    kt.quantize_group(inp + r * ldi + c0, c1 - c0, x, group_scale, group_sum);
    int8_t* tile_q = q + r0 * to.ldq + (r - r0) * kDotRows;
    for (int64_t c = c0; c < c1; c += kDotRows) {
      std::memcpy(tile_q + c * m, x + (c - c0), kDotRows);
    }
  }
}

// Floats of one thread's packed input rows for a float product over t > 1 rows of depth k
// (matmul_streaming), a whole number of cache lines.
int64_t packed_floats(int64_t t, int64_t k) { return (t * k + 15) / 16 * 16; }

// dst (k, m) = src (m, k; row stride ld) transposed: a tile's rows packed for the float
// gemm_rows kernels, so that a depth's m broadcasts are one pointer and constant offsets.
// Read in place, 16 rows need 16 pointers, which GCC could not keep in registers beside
// the loop's own: it parked 9 in vector registers and moved each back for its broadcast,
// every step (9 extra instructions per 16 FMAs). Packed, a 16-sequence float32 decode step
// ran 1.45x faster (a matmul at 16 rows ~115 -> ~180 GFLOP/s per CPU second, Zen 4, 2
// threads).
void pack_rows(float* dst, const float* src, int64_t ld, int64_t m, int64_t k) {
  constexpr int64_t kStep = 16;  // a cache line of each row at a time
  for (int64_t d0 = 0; d0 < k; d0 += kStep) {
    const int64_t d1 = min64(d0 + kStep, k);
    for (int64_t i = 0; i < m; ++i) {
      const float* s = src + i * ld;
      for (int64_t d = d0; d < d1; ++d) dst[d * m + i] = s[d];
    }
  }
}

// A team's scratch for a product of t rows with w: a team cannot allocate, so its caller
// sized the scratch with product_scratch. One too small is a bug in the engine's own
// planning, never in what a user passed: stop at once rather than write past it.
void* team_scratch(const Parallel& par, int64_t t, const PackedMatrix& w) {
  const size_t needed = product_scratch(t, w.k, w.type, par.threads());
  if (needed > par.team()->scratch_bytes()) {
    std::fprintf(stderr, "gpt2cpu: internal error: a team's scratch of %zu bytes for a product "
                 "needing %zu\n", par.team()->scratch_bytes(), needed);
    std::abort();
  }
  return par.team()->scratch();
}

// Bytes of weights the streaming kernels fetch ahead at most: a gemv group of panels (one
// row), a panel (more rows); with the ones being read, well inside a core's L2. Measured at
// 1 thread on a Zen 4 VM, (1 or 16, 768) @ (768, 32000): int4 one row 1.75x, float32 16
// rows 1.35x; but float32 one row (a 192 KB group) 0.8x, whose long panels the hardware
// prefetcher streams well alone.
constexpr int64_t kAheadGroupBytes = int64_t{64} * 1024;
constexpr int64_t kAheadPanelBytes = int64_t{256} * 1024;

// act: applied to each row of a tile before it is stored, or null.
void matmul_streaming(float* out, int64_t ldo, const float* inp, int64_t ldi, int64_t t,
                      const PackedMatrix& w, const float* bias, Accumulate acc,
                      const Activation* act, const Parallel& par) {
  const KernelTable& kt = par.kernels();
  const WeightKernels& wk = kt.weights[static_cast<int>(w.type)];
  ProductRows a;
  a.f = inp;
  a.ld = ldi;
  // The input's prepared form (ProductRows): an integer type's rows quantized once, before
  // the product (O(t k) against its O(t k n)); a float type's rows over several rows packed
  // by each thread for itself (a few us, against a barrier to share one copy). A team
  // cannot allocate, so it uses the scratch its caller sized with product_scratch.
  const bool integer = info(w.type).integer;
  const bool pack = !integer && t > 1;
  Buffer own;
  void* memory = nullptr;
  if (integer || pack) {
    if (par.in_team()) {
      memory = team_scratch(par, t, w);
    } else {
      own.resize((product_scratch(t, w.k, w.type, par.threads()) + 3) / 4);
      memory = own.data();
    }
  }
  float* packed = pack ? static_cast<float*>(memory) : nullptr;
  if (integer) {
    const int64_t group = w.group_rows();
    a = quantized_view(t, w.k, group, memory);
    // Shared by the threads in a team (which meet at a barrier after it either way), or
    // where the rows are many enough to pay for a region.
    par.run([&](const Share& share) { quantize_rows(kt, inp, ldi, t, w.k, group, a, share); },
            par.in_team() || t * w.k >= (int64_t{1} << 15));
  }
  const int64_t panels = w.panels();
  // Handed out in chunks, not split evenly up front: a thread that starts late (woken from
  // a passive wait, or descheduled) then takes a smaller share instead of making the others
  // wait for it. About 8 chunks per thread keep the handing-out cheap.
  // For one row, a whole number of gemv groups, so that only the matrix's last group can
  // be short.
  const int64_t chunks = 8 * static_cast<int64_t>(par.threads());
  const int64_t chunk = t == 1 ? (panels / chunks / kGemvPanels + 1) * kGemvPanels
                               : panels / chunks + 1;
  // Tile rows [0, m) (kPanel floats each) start as bias [+ out rows [r, r + m)] for the
  // columns of panel p, zero past them; finish_tile stores them, activated. A full panel's
  // copies take constant lengths, which the compiler turns into vector moves: a copy of
  // `cols` floats compiled to scalar ones, ~5% of an int8 16-sequence step.
  auto start_tile = [&](float* tile, int64_t r, int64_t m, int64_t p) {
    const int64_t col0 = p * kPanel;
    const int64_t cols = min64(kPanel, w.n - col0);
    alignas(64) float start[kPanel];
    padded_bias(start, bias == nullptr ? nullptr : bias + col0, cols);
    for (int64_t i = 0; i < m; ++i) {
      float* row = tile + i * kPanel;
      const float* o = out + (r + i) * ldo + col0;
      std::memcpy(row, start, sizeof(start));
      if (acc == Accumulate::No) continue;
      if (cols == kPanel) {
        for (int64_t j = 0; j < kPanel; ++j) row[j] += o[j];
      } else {
        for (int64_t j = 0; j < cols; ++j) row[j] += o[j];
      }
    }
  };
  auto finish_tile = [&](float* tile, int64_t r, int64_t m, int64_t p) {
    const int64_t col0 = p * kPanel;
    const int64_t cols = min64(kPanel, w.n - col0);
    // Whole tile rows, padding included: a last panel's few columns then take the vector
    // code too, as the blocked GEMM's in-register activation does.
    if (act != nullptr) activate_here(tile, m * kPanel, *act, kt);
    for (int64_t i = 0; i < m; ++i) {
      float* o = out + (r + i) * ldo + col0;
      const float* row = tile + i * kPanel;
      if (cols == kPanel) {
        std::memcpy(o, row, sizeof(float) * kPanel);
      } else {
        std::memcpy(o, row, sizeof(float) * static_cast<size_t>(cols));
      }
    }
  };
  // How many panels the kernels fetch ahead (WeightKernels): the next ones of the thread's
  // chunk, where they fit in L2 beside the ones being read.
  const int64_t group_ahead = w.panel_bytes() * kGemvPanels <= kAheadGroupBytes ? kGemvPanels : 0;
  const int64_t panel_ahead = w.panel_bytes() <= kAheadPanelBytes ? 1 : 0;
  // Panels [p0, p1) of the one row, a gemv group at a time.
  auto stream_row = [&](int64_t p0, int64_t p1, float* tile) {
    for (int64_t p = p0; p < p1; p += kGemvPanels) {
      const int64_t group = min64(kGemvPanels, p1 - p);
      for (int64_t q = 0; q < group; ++q) start_tile(tile + q * kPanel, 0, 1, p + q);
      wk.gemv(w, p, group, a, tile, min64(group_ahead, p1 - p - group));
      for (int64_t q = 0; q < group; ++q) finish_tile(tile + q * kPanel, 0, 1, p + q);
    }
  };
  // Every row of panel p's columns, through the register tile, a RowTiles tile at a time.
  const RowTiles tiles(t, kt.stream_rows);
  // The first tile fetches the next panel; the others read this one from L2.
  // A float type's tile i reads its rows packed (pack_rows) at mine + first row * k.
  auto stream_panel = [&](int64_t p, int64_t p1, float* tile, const float* mine) {
    for (int64_t i = 0; i < tiles.count; ++i) {
      const int64_t r = tiles.first(i), m = tiles.size(i);
      ProductRows rows = a.from(r);
      if (pack) {
        rows.f = mine + r * w.k;
        rows.ld = m;
      }
      start_tile(tile, r, m, p);
      // The output lines the next panel's tile starts from and stores to: a row apart
      // each, where no prefetcher guesses them, and out of L1 by then (the weights stream
      // through). Fetched now, they are there when its tile starts and finishes.
      if (p + 1 < p1) {
        const float* next = out + r * ldo + (p + 1) * kPanel;
        for (int64_t j = 0; j < m; ++j) __builtin_prefetch(next + j * ldo, 1, 3);
      }
      wk.gemm_rows(w, p, m, rows, tile, kPanel, i == 0 ? min64(panel_ahead, p1 - p - 1) : 0);
      finish_tile(tile, r, m, p);
    }
  };
  par.run([&](const Share& share) {
    alignas(64) float tile[kMaxGemmRows * kPanel];  // also holds a gemv group
    float* mine = nullptr;
    bool packed_yet = false;
    for (int64_t p0 = share.take(chunk); p0 < panels; p0 = share.take(chunk)) {
      const int64_t p1 = min64(p0 + chunk, panels);
      if (t == 1) {
        stream_row(p0, p1, tile);
        continue;
      }
      // Only once this thread has panels to do: a late one may find none left.
      if (pack && !packed_yet) {
        mine = packed + packed_floats(t, w.k) * share.rank;
        for (int64_t i = 0; i < tiles.count; ++i) {
          const int64_t r = tiles.first(i);
          pack_rows(mine + r * w.k, inp + r * ldi, ldi, tiles.size(i), w.k);
        }
        packed_yet = true;
      }
      for (int64_t p = p0; p < p1; ++p) stream_panel(p, p1, tile, mine);
    }
  });
}

// gelu: apply gelu_new to the result as each tile's last depth block finishes.
//
// A row block's input is packed a span of depth blocks at a time (about kSpanBytes), and
// each weight panel runs through the whole span before the next: a tile of the output then
// takes its span's depth blocks back to back, from L1, instead of once per pass over all
// the panels. That matters where the output is wide and the depth short, the LM head above
// all (50257 columns at k = 768: one span, where each of three passes would move 24 MB of a
// row block's logits through memory twice).
void matmul_blocked(float* out, int64_t ldo, const float* inp, int64_t ldi, int64_t t,
                    const PackedMatrix& w, const float* bias, Accumulate acc, bool gelu,
                    const Parallel& par) {
  const KernelTable& kt = par.kernels();
  const WeightKernels& wk = kt.weights[static_cast<int>(w.type)];
  const bool convert = w.type != WeightType::F32;
  const int64_t panels = w.panels();
  const int64_t rows = kt.gemm_rows;
  const int64_t row_block = kRowBlock / rows * rows;
  const int64_t tiles = (t + rows - 1) / rows;
  const int64_t depth_blocks = (w.k + kDepthBlock - 1) / kDepthBlock;
  const int64_t block_bytes = row_block * kDepthBlock * static_cast<int64_t>(sizeof(float));
  const int64_t span = std::max<int64_t>(1, std::min(depth_blocks, kSpanBytes / block_bytes));
  // One packing span per thread, allocated here: nothing may throw in the parallel region
  // (and a team never gets here: it runs only appends of fewer than kTeamRows rows).
  // A weight type other than float32 also gets a block of its weights converted to float32,
  // once per row block, then reused by the block's 20 tiles: under 1% of the multiply-adds.
  const size_t block_floats = static_cast<size_t>(row_block * kDepthBlock);
  const size_t weight_floats = convert ? static_cast<size_t>(kDepthBlock * kPanel) : 0;
  const size_t thread_floats = block_floats * static_cast<size_t>(span) + weight_floats;
  Buffer packed(thread_floats * static_cast<size_t>(par.threads()));
  const int64_t row_bytes = w.panel_bytes() / std::max<int64_t>(w.k, 1);
  par.run([&](const Share& share) {
    // This thread's rows: a contiguous share of whole tiles.
    const int64_t row_begin = share.begin(tiles) * rows;
    const int64_t row_end = min64(t, share.end(tiles) * rows);
    float* a_span = packed.data() + thread_floats * static_cast<size_t>(share.rank);
    float* b_block = a_span + block_floats * static_cast<size_t>(span);
    alignas(64) float tile[kMaxGemmRows * kPanel];
    // Each output starts as the streaming path starts it, bias [+ out], and every depth
    // block's sum (a chain from zero) is added to it in turn: the sums of the few-row
    // kernels, so a row gets the same bits at any row count.
    for (int64_t r = row_begin; r < row_end; ++r) {
      float* o = out + r * ldo;
      for (int64_t j = 0; j < w.n; ++j) {
        const float start = bias != nullptr ? bias[j] : 0.0f;
        o[j] = acc == Accumulate::Yes ? start + o[j] : start;
      }
    }

    for (int64_t r0 = row_begin; r0 < row_end; r0 += row_block) {
      const int64_t mc = min64(row_block, row_end - r0);
      const int64_t block_tiles = (mc + rows - 1) / rows;
      for (int64_t d0 = 0; d0 < depth_blocks; d0 += span) {
        const int64_t d1 = min64(d0 + span, depth_blocks);
        for (int64_t d = d0; d < d1; ++d) {
          const int64_t p0 = d * kDepthBlock, kc = min64(kDepthBlock, w.k - p0);
          float* a_block = a_span + static_cast<size_t>(d - d0) * block_floats;
          for (int64_t ti = 0; ti < block_tiles; ++ti) {
            const int64_t r = r0 + ti * rows;
            kt.pack_tile(a_block + ti * kc * rows, inp + r * ldi + p0, ldi,
                         min64(rows, row_end - r), kc);
          }
        }
        for (int64_t p = 0; p < panels; ++p) {
          const int64_t col0 = p * kPanel;
          const int64_t cols = min64(kPanel, w.n - col0);
          for (int64_t d = d0; d < d1; ++d) {
            const int64_t p0 = d * kDepthBlock, kc = min64(kDepthBlock, w.k - p0);
            const float* a_block = a_span + static_cast<size_t>(d - d0) * block_floats;
            TileEnd end;
            end.add_to_c = true;
            end.gelu_tanh = gelu && p0 + kc == w.k;
            const float* b = b_block;
            if (convert) {
              wk.unpack(w, p, p0, kc, b_block);
            } else {
              b = w.panel_f32(p) + p0 * kPanel;
            }
            // The next block of weights (this panel's next depth block in the span, else
            // the next panel's first) is fetched into L2 a share per tile, by the
            // micro-kernel among its FMAs: its first tile would otherwise wait on memory.
            const int64_t next_p = d + 1 < d1 ? p : (p + 1 < panels ? p + 1 : p);
            const int64_t next_d = d + 1 < d1 ? d + 1 : d0;
            const int64_t next_kc = min64(kDepthBlock, w.k - next_d * kDepthBlock);
            const char* next_b = reinterpret_cast<const char*>(w.panel(next_p)) +
                                 next_d * kDepthBlock * row_bytes;
            const int64_t block_lines = (next_kc * row_bytes + 63) / 64;
            const int64_t lines_per_tile = (block_lines + block_tiles - 1) / block_tiles;
            for (int64_t ti = 0; ti < block_tiles; ++ti) {
              const int64_t m = min64(rows, mc - ti * rows);
              const float* a = a_block + ti * kc * rows;
              float* c = out + (r0 + ti * rows) * ldo + col0;
              const int64_t first_line = min64(block_lines, ti * lines_per_tile);
              end.prefetch = next_b + first_line * 64;
              end.prefetch_lines = min64(block_lines, (ti + 1) * lines_per_tile) - first_line;
              if (m == rows && cols == kPanel) {
                kt.gemm_packed(kc, a, b, c, ldo, end);
                continue;
              }
              // A ragged edge: compute the full tile into scratch, keep the valid part.
              for (int64_t i = 0; i < rows; ++i) {
                for (int64_t j = 0; j < kPanel; ++j) {
                  tile[i * kPanel + j] = i < m && j < cols ? c[i * ldo + j] : 0.0f;
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
    }
  });
}

// Whether a product takes the blocked path: a float W over many rows (k = 0: only the
// streaming path writes out).
bool blocked(int64_t t, const PackedMatrix& w) {
  return t >= kBlockedMinRows && w.k > 0 && !info(w.type).integer;
}

}  // namespace

size_t product_scratch(int64_t t, int64_t k, WeightType type, int threads) {
  if (info(type).integer) return quantized_bytes(t, k);
  if (t <= 1) return 0;
  return static_cast<size_t>(packed_floats(t, k) * threads) * sizeof(float);
}

void matmul(float* out, int64_t ldo, const float* inp, int64_t ldi, int64_t t,
            const PackedMatrix& w, const float* bias, Accumulate acc, const Parallel& par) {
  if (blocked(t, w)) {
    matmul_blocked(out, ldo, inp, ldi, t, w, bias, acc, /*gelu=*/false, par);
  } else {
    matmul_streaming(out, ldo, inp, ldi, t, w, bias, acc, /*act=*/nullptr, par);
  }
}

void matmul_activate(float* out, int64_t ldo, const float* inp, int64_t ldi, int64_t t,
                     const PackedMatrix& w, const float* bias, Activation act, const Parallel& par) {
  if (!blocked(t, w)) {
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
