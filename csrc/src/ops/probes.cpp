// The machine's two ceilings that bench reports speed against, measured with the kernel
// table in use: memory read bandwidth (decode streams every weight) and arithmetic peak
// (a prompt runs the GEMM micro-kernel's FMAs).
#include <omp.h>

#include <chrono>
#include <cstring>

#include "gpt2cpu/buffer.h"
#include "gpt2cpu/kernels.h"
#include "gpt2cpu/ops.h"

namespace gpt2cpu {

double measure_read_bandwidth(size_t bytes, int threads, int repeats) {
  const size_t n = bytes / sizeof(float);
  Buffer buffer(n, Buffer::Pages::Huge);  // as the weights are stored
  // Touch every page first, from the threads that will read it (first-touch placement).
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < static_cast<int64_t>(n); i += 1024) buffer.data()[i] = 1.0f;

  const KernelTable& kt = kernels();
  double best = 0.0;
  volatile float sink = 0.0f;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    float total = 0.0f;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      // Each thread streams a contiguous share with the best kernel set's loads, as the
      // matmul kernels do: the same rate decode can reach.
      const int team = omp_get_num_threads();
      const int me = omp_get_thread_num();
      const size_t blocks = n / 64;
      const size_t begin = blocks * me / team * 64;
      const size_t end = blocks * (me + 1) / team * 64;
      total += kt.sum(buffer.data() + begin, static_cast<int64_t>(end - begin));
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    sink = sink + total;
    const double rate = static_cast<double>(n / 64 * 64 * sizeof(float)) / seconds;
    if (rate > best) best = rate;
  }
  return best;
}

double measure_multiply_add_peak(int threads, int64_t rounds, int repeats) {
  const KernelTable& kt = kernels();
  double best = 0.0;
  volatile float sink = 0.0f;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    float total = 0.0f;
    int team = 1;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
#pragma omp single
      team = omp_get_num_threads();
      total += kt.multiply_add(rounds, static_cast<float>(omp_get_thread_num()));
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    sink = sink + total;
    const double flops = 2.0 * kMultiplyAddLanes * static_cast<double>(rounds) * team;
    if (flops / seconds > best) best = flops / seconds;
  }
  return best;
}

}  // namespace gpt2cpu
