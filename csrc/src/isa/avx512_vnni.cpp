// The avx512 set's weight kernels again, compiled with -mavx512vnni on top of the set's
// flags: the integer types' products in vpdpbusd (vec_avx512.h). avx512.cpp takes them into
// its table only where cpu_has_avx512_vnni().
#include <cstdint>

#include "gpt2cpu/kernel_table.h"
#include "../simd/vec_avx512.h"
#include "weight_kernels.inc"

namespace gpt2cpu {

void fill_avx512_vnni_weight_kernels(WeightKernels* out) { typed::fill_weight_kernels(out); }

}  // namespace gpt2cpu
