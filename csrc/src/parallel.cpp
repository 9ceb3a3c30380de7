#include "gpt2cpu/parallel.h"

#include <chrono>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

namespace gpt2cpu {

namespace {

// How long a thread spins at the barrier before it sleeps. Long enough to cover what one
// thread does alone between two shared operators of a decode step (a layer norm, a few
// microseconds; attention over a short context, up to ~150 us with the cache evicted), so
// that a step passes its barriers without sleeping. Short enough that a thread whose
// partner was descheduled, on a machine busy with other work, gives its core back soon.
constexpr std::chrono::microseconds kSpin{200};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

void Team::wait(int size) {
  if (size <= 1) {
    next_.store(0, std::memory_order_relaxed);
    return;
  }
  // Read before arriving: the generation cannot move on until this thread has arrived.
  const uint32_t generation = generation_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == size) {
    // The last to arrive: every other thread is waiting, so the shared state is ours to
    // reset before the release below publishes it.
    arrived_.store(0, std::memory_order_relaxed);
    next_.store(0, std::memory_order_relaxed);
    generation_.store(generation + 1, std::memory_order_seq_cst);
    // seq_cst pairs with the sleeper's increment and check below: either it sees the new
    // generation, or this sees it counted and wakes it.
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      woken_.notify_all();
    }
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (uint32_t i = 1;; ++i) {
    if (generation_.load(std::memory_order_acquire) != generation) return;
    cpu_relax();
    if (i % 256 == 0 && std::chrono::steady_clock::now() > deadline) break;
  }
  std::unique_lock<std::mutex> lock(mutex_);
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  woken_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != generation; });
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace gpt2cpu
