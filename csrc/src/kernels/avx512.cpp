// TEMPORARY bridge until the avx512 kernel set lands: the avx2 float32 kernels with
// AVX-512 weight kernels.
#include <cstdint>

#include "gpt2cpu/kernels.h"

namespace gpt2cpu {
namespace {
#include "../simd/vec_avx512.h"
#include "weight_kernels.inc"
}  // namespace

void fill_avx512_weight_kernels(WeightKernels* out) { fill_weight_kernels(out); }

}  // namespace gpt2cpu
