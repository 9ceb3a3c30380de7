#include "gpt2cpu/buffer_pool.h"

#include <utility>

namespace gpt2cpu {

Buffer BufferPool::take(size_t n_floats) {
  Buffer unfit;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Every page of the idle buffer is resident: one more than twice too big would hold
    // memory its new user does not need.
    if (n_floats > 0 && idle_.size() >= n_floats && idle_.size() / 2 <= n_floats) {
      in_use_.insert(idle_.size());
      return std::move(idle_);
    }
    // Kept, it would only add to peak memory beside the new one.
    unfit = std::move(idle_);
  }
  unfit = Buffer();  // freed outside the lock
  Buffer fresh(n_floats);
  if (fresh.size() == 0) return fresh;  // nothing to track: give() ignores empty buffers
  std::lock_guard<std::mutex> lock(mutex_);
  in_use_.insert(fresh.size());
  return fresh;
}

void BufferPool::give(Buffer b) noexcept {
  if (b.size() == 0) return;
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = in_use_.find(b.size());
    if (it != in_use_.end()) in_use_.erase(it);
    const bool biggest = in_use_.empty() || b.size() >= *in_use_.rbegin();
    if (biggest && b.size() > idle_.size() && b.size() <= most_idle_) std::swap(idle_, b);
  } catch (...) {
    // The lock failed: b is simply freed.
  }
  // Whichever buffer b now holds is freed on return, outside the lock.
}

}  // namespace gpt2cpu
