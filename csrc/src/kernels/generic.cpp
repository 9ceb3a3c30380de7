// The portable kernels, built with the compiler's baseline flags: runs on any CPU.
#include <cmath>
#include <cstdint>

#include "gpt2cpu/kernels.h"

namespace gpt2cpu {
namespace {
#include "portable.inc"
}  // namespace

const KernelTable& generic_kernels() {
  static const KernelTable table = {
      "generic",          gemm_tile_portable,   gemv_portable,         gemm_packed_portable,
      pack_tile_portable, layernorm_portable,   gelu_tanh_portable,    sum_streams_portable,
      multiply_add_portable, exp_weights_portable, attend_portable, attend_block_portable,
  };
  return table;
}

}  // namespace gpt2cpu
