// The kernel set for x86-64 CPUs with AVX2, FMA and F16C. This file alone (of the core) is
// compiled with -mavx2 -mfma -mf16c; dispatch.cpp calls into it only after checking the CPU
// has all three.
#include <cmath>
#include <cstdint>

#include "gpt2cpu/kernel_table.h"
#include "../simd/vec_avx2.h"

namespace gpt2cpu {
namespace {
// 6 rows of 2 vectors: 12 accumulators, 2 of weights and a broadcast fill the 16 registers.
constexpr int kTileRows = 6;
// 12 chains of 8 lanes: enough independent FMAs for two FMA units of 4-cycle latency.
constexpr int kMultiplyAddChains = 12;
// The weight kernels' tile: the GEMM's, for the same registers.
constexpr int kStreamRows = kTileRows;
}  // namespace
}  // namespace gpt2cpu

#include "fp32_kernels.inc"
#include "weight_kernels.inc"
#include "encode_kernels.inc"

namespace gpt2cpu {

const KernelTable& avx2_kernels() {
  static const KernelTable table =
      with_encode_kernel(with_weight_kernels(make_table("avx2", "avx2 fma f16c")));
  return table;
}

}  // namespace gpt2cpu
