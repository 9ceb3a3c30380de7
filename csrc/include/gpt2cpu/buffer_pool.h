#pragma once
// Memory that one model's sequences hand on to each other. A sequence's KV cache and
// activations are tens of MB: mapping them afresh for every sequence makes the kernel
// zero each page on first touch, about 0.5 ms per MB on our VM (5% of a 512-token prompt,
// 3% of a 16-prompt generate whose 15 new caches faulted in 24k pages).
//
// The pool keeps the buffers given back, so that the next sequences reuse their pages, but
// never more than the workload has shown it needs: the buffers in use plus the idle ones
// stay within the most that were ever in use at once (the high-water mark), and the idle
// ones within a bound of their own (for KV caches, the model's weight bytes: an idle model
// holds at most twice its weights). A batch of 16 sequences leaves 16 caches for the next
// batch; a workload that changes shape frees the idle buffers that do not fit it before it
// maps new ones. Everything goes when the model does.

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "gpt2cpu/buffer.h"

namespace gpt2cpu {

class BufferPool {
 public:
  // most_idle_floats: a buffer bigger than this is freed when given back, never kept idle;
  // so is one that would take the idle buffers past most_idle_total_floats.
  explicit BufferPool(size_t most_idle_floats = SIZE_MAX,
                      size_t most_idle_total_floats = SIZE_MAX)
      : most_idle_(most_idle_floats), most_idle_total_(most_idle_total_floats) {}
  // A buffer of at least n_floats: the smallest idle one that is big enough but not more
  // than twice that (all of an idle buffer's pages are resident), holding whatever its last
  // user left in it; else a new zero-filled one, for which idle buffers are freed first as
  // far as the high-water mark needs. Throws std::bad_alloc.
  Buffer take(size_t n_floats);
  // Keeps b idle for a later take, within the bounds above.
  void give(Buffer b) noexcept;

 private:
  const size_t most_idle_;
  const size_t most_idle_total_;
  std::mutex mutex_;
  std::vector<Buffer> idle_;
  size_t idle_floats_ = 0;
  size_t in_use_floats_ = 0;
  size_t high_water_ = 0;  // the most floats ever in use at once
};

}  // namespace gpt2cpu
