// The kernel set for aarch64's Advanced SIMD (NEON), which every aarch64 CPU has.
#include <cmath>
#include <cstdint>

#include "gpt2cpu/kernel_table.h"
#include "../simd/vec_neon.h"

namespace gpt2cpu {
namespace {
// 6 rows of 4 vectors: 24 accumulators, 4 of weights and a broadcast in 32 registers.
constexpr int kTileRows = 6;
// 16 chains of 4 lanes: up to four FMA pipes of 4-cycle latency (Neoverse V1) stay busy.
constexpr int kMultiplyAddChains = 16;
// The weight kernels' tile: the GEMM's, for the same registers.
constexpr int kStreamRows = kTileRows;
}  // namespace
}  // namespace gpt2cpu

#include "fp32_kernels.inc"
#include "weight_kernels.inc"

namespace gpt2cpu {

const KernelTable& neon_kernels() {
  static const KernelTable table = with_weight_kernels(make_table("neon", "asimd"));
  return table;
}

}  // namespace gpt2cpu
