#include "gpt2cpu/buffer_pool.h"

#include <utility>

namespace gpt2cpu {

Buffer BufferPool::take(size_t n_floats) {
  Buffer too_small;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (idle_.size() >= n_floats && n_floats > 0) return std::move(idle_);
    // The idle buffer would only add to peak memory while the bigger one is in use.
    too_small = std::move(idle_);
  }
  too_small = Buffer();  // freed outside the lock
  return Buffer(n_floats);
}

void BufferPool::give(Buffer b) noexcept {
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    if (b.size() > idle_.size()) std::swap(idle_, b);
  } catch (...) {
    // The lock failed: b is simply freed.
  }
  // Whichever buffer b now holds is freed on return, outside the lock.
}

}  // namespace gpt2cpu
