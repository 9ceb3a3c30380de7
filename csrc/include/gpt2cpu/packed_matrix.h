#pragma once
// A weight matrix W (k inputs, n outputs) stored in column panels of kPanel outputs, in one
// of the weight types (weight_type.h): panel p holds W[0:k, p*kPanel : (p+1)*kPanel],
// zero-padded past n. Every kernel reads a panel front to back: the one-token GEMV streams
// each panel once, and the GEMM's micro-kernel reads a panel's rows in order.
//  - float types: row by row, kPanel weights a row.
//  - integer types: one float scale per output for each group of G = group_rows rows,
//    W[r][j] = q[r][j] * scale[r / G][j], and the rows in blocks of kDotRows = 4, zero-padded
//    past k, each block holding output j's 4 weights side by side (byte 4j + t is row t of
//    the block), the layout of an integer dot product's operand:
//      int8: 64 bytes a block, byte 4j + t = q + 128 (offset binary: an unsigned operand);
//      int4: 32 bytes a block, byte i holding value i in its low nibble and value i + 32 in
//            its high one, value 4j + t = q + 8 (outputs 0-7 low, 8-15 high).

#include <cstdint>

#include "gpt2cpu/weight_type.h"

namespace gpt2cpu {

constexpr int64_t kPanel = 16;

struct PackedMatrix {
  WeightType type = WeightType::F32;
  uint8_t* data = nullptr;  // panels() panels of panel_bytes() each
  float* scales = nullptr;  // panels() blocks of groups() x kPanel floats; null if unscaled
  int64_t k = 0;            // inputs (rows of W)
  int64_t n = 0;            // outputs (columns of W)

  int64_t panels() const { return (n + kPanel - 1) / kPanel; }
  int64_t group_rows() const { return info(type).group_rows; }
  // Scale groups down each column: 0 for an unscaled type.
  int64_t groups() const { return groups(type, k); }
  int64_t panel_bytes() const { return panel_bytes(type, k); }
  const uint8_t* panel(int64_t p) const { return data + p * panel_bytes(); }
  const float* panel_scales(int64_t p) const { return scales + p * groups() * kPanel; }
  // The float32 panel p: only for a float32 matrix.
  const float* panel_f32(int64_t p) const {
    return reinterpret_cast<const float*>(data) + p * k * kPanel;
  }

  static int64_t groups(WeightType t, int64_t k) {
    const int64_t g = info(t).group_rows;
    return g == 0 ? 0 : (k + g - 1) / g;
  }
  // Rows as stored: integer types pad k to whole blocks of kDotRows.
  static int64_t stored_rows(WeightType t, int64_t k) {
    return info(t).integer ? (k + kDotRows - 1) / kDotRows * kDotRows : k;
  }
  static int64_t panel_bytes(WeightType t, int64_t k) {
    return stored_rows(t, k) * kPanel * info(t).bits / 8;
  }
  // Bytes of weights and of scales a (k, n) matrix of type t occupies.
  static int64_t data_bytes(WeightType t, int64_t k, int64_t n) {
    return (n + kPanel - 1) / kPanel * panel_bytes(t, k);
  }
  static int64_t scale_bytes(WeightType t, int64_t k, int64_t n) {
    return (n + kPanel - 1) / kPanel * groups(t, k) * kPanel * 4;
  }

  // Fill from W given as (k, n) row-major float32: Hugging Face Conv1D weights.
  void pack_from_k_by_n(const float* w, int threads = 1);
  // Fill from W^T given as (n, k) row-major float32: nn.Linear weights, the tied embedding.
  void pack_from_n_by_k(const float* wt, int threads = 1);
  // W[r][j] as float32 (dequantized).
  float at(int64_t r, int64_t j) const;
  // out (k) = W[:, j] as float32 (dequantized): an embedding lookup on a tied head.
  void column(int64_t j, float* out) const;
  // W[:, first : first + count] as a matrix of its own, sharing this one's panels. first
  // must start a panel, and the range must end at a panel's end or at n: std::out_of_range.
  PackedMatrix columns(int64_t first, int64_t count) const;
  // Rows [r0, r0 + rows) of panel p from their float32 form f (rows, kPanel), quantizing
  // where the type says so: what a loader reading a matrix a band of rows at a time calls.
  // For an integer type r0 must start a scale group and rows must end one (or end at k).
  // Distinct calls write distinct bytes: threads may fill one panel's bands side by side.
  // This is the reference; kernel sets carry faster encoders that write the same bytes.
  void encode_rows(int64_t p, int64_t r0, int64_t rows, const float* f) const;

 private:
  template <class Gather>
  void pack_panels(int threads, Gather gather);
};

}  // namespace gpt2cpu
