#pragma once
// How an operator spreads its work over threads, in one of two ways:
//  - a region per operator, Parallel(threads): the operator opens an OpenMP region of its
//    own. A prompt's operators take milliseconds each; opening a region is nothing beside.
//  - a team, in_team(): one region runs a whole decode step, and its threads go through the
//    step's ~100 operators together, meeting at a Team barrier between them that spins for
//    a while before it sleeps (unless the machine is busy). Each operator is only
//    20-500 us long there: under OMP_WAIT_POLICY=PASSIVE a region of its own costs a futex
//    wake-up and a sleep every time (~100 context switches a 124M step on 2 cores).
// An operator's body sees only its Share (its rank, the team's size and a counter to take
// work from) and uses no OpenMP construct, so one body serves both ways.
//
// Every region's thread count goes through usable_threads(): libgomp's thread pool does
// not survive fork(), and a forked child that opens a region of more than one thread after
// its parent had one waits forever for pool threads that do not exist in it. Such a child
// runs on one thread (a region of one never touches the pool), which gives the same
// results, as every operator does on any number of threads.
//
// A Parallel also carries the kernel set (kernel_table.h) its operators run: a model's own,
// so that models loaded with different sets can run side by side in one process.

#include <omp.h>

#include "gpt2cpu/buffer.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "gpt2cpu/kernel_table.h"

namespace gpt2cpu {

// `requested`, or 1 in a process forked after this one had run a region of several
// threads. Call it for every region's thread count, before the region.
int usable_threads(int requested);

// Whether this process is such a forked child, whose regions run on one thread.
bool forked_after_threads();

// What the threads of one region share: a barrier, and the counter operators take dynamic
// work from, which the barrier sets back to 0 for the next operator.
class Team {
 public:
  // Decides how long the barrier spins for this region: not at all when the machine has
  // been busy (more runnable threads than cores) since the last team was made.
  // scratch_bytes: memory the team's operators share (allocated here, since nothing may be
  // allocated inside the region): the integer products' quantized inputs.
  explicit Team(size_t scratch_bytes = 0);
  Team(const Team&) = delete;
  Team& operator=(const Team&) = delete;

  // Returns once all `size` threads of the team have called it.
  void wait(int size);
  std::atomic<int64_t>& next() { return next_; }
  void* scratch() { return scratch_.data(); }
  size_t scratch_bytes() const { return scratch_.size() * sizeof(float); }

 private:
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<int64_t> next_{0};
  std::chrono::steady_clock::duration spin_;
  std::atomic<int> sleepers_{0};
  std::mutex mutex_;
  std::condition_variable woken_;
  Buffer scratch_;
};

// One thread's part of an operator's work.
struct Share {
  int rank;
  int size;
  std::atomic<int64_t>* next;

  // This thread's even part [begin, end) of n items.
  int64_t begin(int64_t n) const { return n * rank / size; }
  int64_t end(int64_t n) const { return n * (rank + 1) / size; }
  // The first of `chunk` items that no thread has taken yet: past the end when none are left.
  int64_t take(int64_t chunk) const { return next->fetch_add(chunk, std::memory_order_relaxed); }
};

class Parallel {
 public:
  // Each operator opens a region of `threads` threads.
  explicit Parallel(int threads, const KernelTable& kt = gpt2cpu::kernels())
      : kernels_(&kt), threads_(usable_threads(threads)) {}
  // This thread's place in a team whose region is running.
  Parallel(Team& team, int rank, int size, const KernelTable& kt)
      : kernels_(&kt), team_(&team), rank_(rank), threads_(size) {}

  // The kernel set the operators run.
  const KernelTable& kernels() const { return *kernels_; }

  int threads() const { return threads_; }
  bool in_team() const { return team_ != nullptr; }
  // This thread's rank in the team (0 outside one).
  int rank() const { return rank_; }
  // The team's shared scratch (see Team), null outside a team.
  Team* team() const { return team_; }

  // Runs body(Share) on every thread, or on one if !wide (work too small to be worth
  // waking a thread for), and returns when it has finished everywhere.
  template <class Body>
  void run(Body&& body, bool wide = true) const {
    if (team_ != nullptr) {
      if (wide || rank_ == 0) body(Share{wide ? rank_ : 0, wide ? threads_ : 1, &team_->next()});
      team_->wait(threads_);
      return;
    }
    std::atomic<int64_t> next{0};
    if (!wide || threads_ == 1) {
      body(Share{0, 1, &next});
      return;
    }
#pragma omp parallel num_threads(threads_)
    body(Share{omp_get_thread_num(), omp_get_num_threads(), &next});
  }

 private:
  const KernelTable* kernels_;
  Team* team_ = nullptr;
  int rank_ = 0;
  int threads_;
};

// Runs step(const Parallel&) on each thread of one region of `threads` threads, as a team.
// step must not throw: an exception cannot leave an OpenMP region.
template <class Step>
void in_team(int threads, Step&& step, const KernelTable& kt = kernels(),
             size_t scratch_bytes = 0) {
  threads = usable_threads(threads);
  Team team(scratch_bytes);
#pragma omp parallel num_threads(threads)
  step(Parallel(team, omp_get_thread_num(), omp_get_num_threads(), kt));
}

// Runs work(const Parallel&) on `threads` threads: as one team if `team`, else with a
// region for each operator it runs.
template <class Work>
void with_parallel(int threads, bool team, Work&& work, const KernelTable& kt = kernels(),
                   size_t team_scratch_bytes = 0) {
  if (team) {
    in_team(threads, [&](const Parallel& par) { work(par); }, kt, team_scratch_bytes);
  } else {
    work(Parallel(threads, kt));
  }
}

}  // namespace gpt2cpu
