// Row-wise and element-wise operators: layer norm and the MLP's activation.
#include <cmath>

#include "gpt2cpu/kernel_table.h"
#include "gpt2cpu/ops.h"

namespace gpt2cpu {

namespace {
// Below this many elements a second thread costs more than it saves.
constexpr int64_t kParallelMin = 1 << 14;
}  // namespace

void layernorm(float* out, const float* x, const float* weight, const float* bias, int64_t t,
               int64_t n, float eps, const Parallel& par) {
  const KernelTable& kt = par.kernels();
  par.run(
      [&](const Share& share) {
        for (int64_t r = share.begin(t); r < share.end(t); ++r) {
          kt.layernorm(out + r * n, x + r * n, weight, bias, n, eps);
        }
      },
      t * n >= kParallelMin);
}

void activate_here(float* p, int64_t len, Activation kind, const KernelTable& kt) {
  switch (kind) {
    case Activation::GeluTanh:
      kt.gelu_tanh(p, len);
      break;
    case Activation::GeluErf:
      for (int64_t i = 0; i < len; ++i) p[i] = 0.5f * p[i] * (1.0f + std::erf(p[i] * 0.70710678118654752f));
      break;
    case Activation::Relu:
      for (int64_t i = 0; i < len; ++i) p[i] = p[i] > 0.0f ? p[i] : 0.0f;
      break;
  }
}

void activate(float* x, int64_t n, Activation kind, const Parallel& par) {
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  par.run(
      [&](const Share& share) {
        for (int64_t c = share.begin(chunks); c < share.end(chunks); ++c) {
          const int64_t len = n - c * kChunk < kChunk ? n - c * kChunk : kChunk;
          activate_here(x + c * kChunk, len, kind, par.kernels());
        }
      },
      n >= kParallelMin);
}

}  // namespace gpt2cpu
