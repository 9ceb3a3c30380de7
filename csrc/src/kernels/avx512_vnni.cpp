// The weight kernels of the avx512 set on CPUs with AVX512-VNNI (Ice Lake, Sapphire Rapids,
// Zen 4 on): the integer types' dot products in vpdpbusd, 64 products an instruction.
// Compiled with -mavx512vnni on top of the avx512 set's flags; dispatch.cpp uses them only
// after checking the CPU has VNNI.
#include <cstdint>

#include "gpt2cpu/kernels.h"

namespace gpt2cpu {
namespace {
#include "../simd/vec_avx512.h"
#include "weight_kernels.inc"
}  // namespace

void fill_avx512_vnni_weight_kernels(WeightKernels* out) { fill_weight_kernels(out); }

}  // namespace gpt2cpu
