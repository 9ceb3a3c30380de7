// The kernel set for x86-64 CPUs with AVX-512 F, BW, VL and DQ (and FMA, F16C). This file
// alone (of the core) is compiled with those flags; dispatch.cpp calls into it only after
// checking that the CPU has them and the OS saves the ZMM state.
#include <cmath>
#include <cstdint>

#include "gpt2cpu/kernel_table.h"
#include "../simd/vec_avx512.h"

namespace gpt2cpu {
namespace {
// 14 rows of one vector: 14 accumulators in 32 registers leave room for the weights of
// several steps in flight, and each weight row loaded feeds 14 FMAs (15 loads per 14 FMAs,
// the broadcasts folded into them). Against 12 rows: 1.05-1.1x GEMM at 1 thread in noisy
// alternating runs on a Zen 4 VM (medians of 6).
constexpr int kTileRows = 14;
// 12 chains of 16 lanes: two FMA units of 4-cycle latency need 8; spare chains cost nothing.
constexpr int kMultiplyAddChains = 12;
// 16 rows in the weight kernels: 16 accumulators and a weight row, or 16 integer sums and a
// block, in 32 registers. A 16-sequence decode step then reads each weight panel once,
// where 14 rows read it twice (14 + 2).
constexpr int kStreamRows = 16;
}  // namespace
}  // namespace gpt2cpu

#include "fp32_kernels.inc"
#include "weight_kernels.inc"
#include "encode_kernels.inc"

namespace gpt2cpu {

const KernelTable& avx512_kernels() {
  static const KernelTable table = [] {
    // With VNNI (Ice Lake, Sapphire Rapids, Zen 4 on) the integer types' products take
    // its byte dot products: 64 multiply-adds an instruction instead of 32 in two.
    if (!cpu_has_avx512_vnni()) {
      return with_encode_kernel(
          with_weight_kernels(make_table("avx512", "avx512f avx512bw avx512vl avx512dq fma f16c")));
    }
    KernelTable t = make_table("avx512", "avx512f avx512bw avx512vl avx512dq fma f16c avx512_vnni");
    fill_avx512_vnni_weight_kernels(t.weights);
    return with_encode_kernel(t);
  }();
  return table;
}

}  // namespace gpt2cpu
