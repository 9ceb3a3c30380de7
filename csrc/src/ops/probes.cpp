// The machine's two ceilings that bench reports speed against, measured with the kernel
// table in use: memory read bandwidth (decode streams every weight) and arithmetic peak
// (a prompt runs the GEMM micro-kernel's FMAs).
#include <omp.h>

#include <chrono>

#include "gpt2cpu/buffer.h"
#include "gpt2cpu/kernel_table.h"
#include "gpt2cpu/ops.h"

namespace gpt2cpu {

namespace {

// The best rate of `repeats` timed passes on `threads` threads. In a pass each thread runs
// work(rank, team size), whose result is kept so that the compiler cannot drop it;
// amount(team size) is what one pass does (bytes, flops).
template <class Work, class Amount>
double best_of_passes(int threads, int repeats, const Work& work, const Amount& amount) {
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
      total += work(omp_get_thread_num(), omp_get_num_threads());
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    sink = sink + total;
    const double rate = amount(team) / seconds;
    if (rate > best) best = rate;
  }
  return best;
}

}  // namespace

double measure_read_bandwidth(size_t bytes, int threads, int repeats, const KernelTable& kt) {
  threads = usable_threads(threads);
  const size_t n = bytes / sizeof(float);
  const size_t blocks = n / 64;
  Buffer buffer(n, Buffer::Pages::Huge);  // as the weights are stored
  // Touch every page first, from the threads that will read it (first-touch placement).
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < static_cast<int64_t>(n); i += 1024) buffer.data()[i] = 1.0f;

  const auto bytes_read = [&](int) { return static_cast<double>(blocks * 64 * sizeof(float)); };
  // Each thread reads a contiguous share with the kernel set's loads, as one stream or as
  // several side by side: the best of these is the machine's read bandwidth, whatever
  // access pattern gets it (gemv reads kGemvPanels streams).
  double best = 0.0;
  for (const int64_t streams : {1, 2, 4, 8}) {
    const auto stream = [&](int me, int team) {
      const size_t begin = blocks * static_cast<size_t>(me) / static_cast<size_t>(team) * 64;
      const size_t end = blocks * static_cast<size_t>(me + 1) / static_cast<size_t>(team) * 64;
      return kt.sum(buffer.data() + begin, static_cast<int64_t>(end - begin), streams);
    };
    const double rate = best_of_passes(threads, repeats, stream, bytes_read);
    if (rate > best) best = rate;
  }
  return best;
}

double measure_multiply_add_peak(int threads, int64_t rounds, int repeats,
                                  const KernelTable& kt) {
  threads = usable_threads(threads);
  const auto multiply_add = [&](int me, int) {
    return kt.multiply_add(rounds, static_cast<float>(me));
  };
  const auto flops = [&](int team) {
    return 2.0 * static_cast<double>(kt.multiply_add_lanes) * static_cast<double>(rounds) * team;
  };
  return best_of_passes(threads, repeats, multiply_add, flops);
}

}  // namespace gpt2cpu
