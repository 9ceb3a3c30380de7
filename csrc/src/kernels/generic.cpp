// The portable kernels, built with the compiler's baseline flags: runs on any CPU.
#include <cmath>
#include <cstdint>

#include "gpt2cpu/kernels.h"

namespace gpt2cpu {
namespace {
#include "../simd/vec_generic.h"
#include "portable.inc"
#include "weight_kernels.inc"

KernelTable make_table() {
  KernelTable t{};
  t.name = "generic";
  fill_weight_kernels(t.weights);
  t.gemm_tile = gemm_tile_portable;
  t.gemv = gemv_portable;
  t.gemm_packed = gemm_packed_portable;
  t.pack_tile = pack_tile_portable;
  t.layernorm = layernorm_portable;
  t.gelu_tanh = gelu_tanh_portable;
  t.sum = sum_streams_portable;
  t.multiply_add = multiply_add_portable;
  t.exp_weights = exp_weights_portable;
  t.attend = attend_portable;
  t.attend_block = attend_block_portable;
  return t;
}
}  // namespace

const KernelTable& generic_kernels() {
  static const KernelTable table = make_table();
  return table;
}

}  // namespace gpt2cpu
