// The portable kernel set, built with the compiler's baseline flags: runs on any CPU.
#include <cmath>
#include <cstdint>

#include "gpt2cpu/kernel_table.h"
#include "../simd/vec_generic.h"

namespace gpt2cpu {
namespace {
// 4 rows of 16: the baseline (SSE2) has 16 registers of 4 floats, and a bigger tile spills.
constexpr int kTileRows = 4;
constexpr int kMultiplyAddChains = 12;
// The weight kernels' tile: the GEMM's, for the same registers.
constexpr int kStreamRows = kTileRows;
}  // namespace
}  // namespace gpt2cpu

#include "fp32_kernels.inc"
#include "weight_kernels.inc"

namespace gpt2cpu {

const KernelTable& generic_kernels() {
  static const KernelTable table = with_weight_kernels(make_table("generic", ""));
  return table;
}

}  // namespace gpt2cpu
