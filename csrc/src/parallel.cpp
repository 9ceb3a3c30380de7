#include "gpt2cpu/parallel.h"

#include <chrono>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sys/resource.h>
#endif

namespace gpt2cpu {

namespace {

using Clock = std::chrono::steady_clock;

// How long a thread spins at the barrier before it sleeps, on a machine with a core for
// each thread: long enough to cover what one thread does alone between two shared
// operators of a decode step (a layer norm, the attention of a short context), so that a
// step passes its barriers without sleeping. Measured on 2 cores, 124M decode steps
// alternating in one process with a region per operator: 0.96x the time per token.
constexpr std::chrono::microseconds kSpin{100};

// Involuntary context switches per millisecond above which the machine counts as busy:
// more runnable threads than cores. 124M decode on 2 cores had under 0.05 alone, and 1.8
// beside one process spinning on a core.
constexpr double kBusySwitchesPerMs = 0.5;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  __builtin_ia32_pause();  // PAUSE; intrinsics headers are kept to the vector layers
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Whether this process's threads were preempted often since the last call: then a thread
// spinning at a barrier only burns the time slice its descheduled partner needs to arrive.
// Beside one process spinning on a core, 124M decode with 2 threads took 1.5x the time
// per token of a region per operator (passive waits) when its barrier always spun, and
// 0.94-1.07x when it decides by this.
bool machine_is_busy() {
#if defined(__unix__) || defined(__APPLE__)
  static std::mutex mutex;
  static long last_switches = 0;
  static Clock::time_point last_time;
  // try_lock: a child forked while another thread held the mutex would wait forever on it.
  std::unique_lock<std::mutex> lock(mutex, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return false;
  const Clock::time_point now = Clock::now();
  const double ms = std::chrono::duration<double, std::milli>(now - last_time).count();
  const long switches = usage.ru_nivcsw - last_switches;
  last_switches = usage.ru_nivcsw;
  last_time = now;
  return static_cast<double>(switches) > kBusySwitchesPerMs * ms;
#else
  return false;
#endif
}

// Set once a region of several threads has been opened: from then on libgomp holds a pool
// of threads that a forked child would not have.
std::atomic<bool> g_pool_started{false};
std::atomic<bool> g_forked_after_threads{false};

#if defined(__unix__) || defined(__APPLE__)
void on_fork_in_child() {
  if (g_pool_started.load(std::memory_order_relaxed)) {
    g_forked_after_threads.store(true, std::memory_order_relaxed);
  }
}
// Registered when the library loads, so that no fork can come before it.
[[maybe_unused]] const int g_fork_handler = pthread_atfork(nullptr, nullptr, on_fork_in_child);
#endif

}  // namespace

int usable_threads(int requested) {
  if (g_forked_after_threads.load(std::memory_order_relaxed)) return 1;
  if (requested > 1 && !g_pool_started.load(std::memory_order_relaxed)) {
    g_pool_started.store(true, std::memory_order_relaxed);
  }
  return requested;
}

bool forked_after_threads() { return g_forked_after_threads.load(std::memory_order_relaxed); }

Team::Team(size_t scratch_bytes)
    : spin_(machine_is_busy() ? Clock::duration::zero() : Clock::duration(kSpin)),
      scratch_((scratch_bytes + sizeof(float) - 1) / sizeof(float)) {}

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
  const Clock::time_point deadline = Clock::now() + spin_;
  for (uint32_t i = 1;; ++i) {
    if (generation_.load(std::memory_order_acquire) != generation) return;
    cpu_relax();
    if (i % 64 == 0 && Clock::now() > deadline) break;
  }
  std::unique_lock<std::mutex> lock(mutex_);
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  woken_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != generation; });
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace gpt2cpu
