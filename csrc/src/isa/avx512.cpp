// The kernel set for x86-64 CPUs with AVX-512 F, BW, VL and DQ (and FMA, F16C). This file
// alone (of the core) is compiled with those flags; dispatch.cpp calls into it only after
// checking that the CPU has them and the OS saves the ZMM state.
#include <cmath>
#include <cstdint>

#include "gpt2cpu/kernel_table.h"
#include "../simd/vec_avx512.h"

namespace gpt2cpu {
namespace {
// 12 rows of one vector: 12 accumulators in 32 registers leave room for the weights and
// broadcasts of several steps in flight.
constexpr int kTileRows = 12;
// 12 chains of 16 lanes: two FMA units of 4-cycle latency need 8; spare chains cost nothing.
constexpr int kMultiplyAddChains = 12;
}  // namespace
}  // namespace gpt2cpu

#include "fp32_kernels.inc"
// Typed weights' kernels: weight_kernels.inc goes here, and into make_table.

namespace gpt2cpu {

const KernelTable& avx512_kernels() {
  static const KernelTable table =
      make_table("avx512", "avx512f avx512bw avx512vl avx512dq fma f16c");
  return table;
}

}  // namespace gpt2cpu
