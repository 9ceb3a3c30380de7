#include "gpt2cpu/buffer_pool.h"

#include <algorithm>
#include <utility>

namespace gpt2cpu {

Buffer BufferPool::take(size_t n_floats) {
  std::vector<Buffer> unfit;  // freed outside the lock
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (n_floats > 0) {
      auto best = idle_.end();
      for (auto it = idle_.begin(); it != idle_.end(); ++it) {
        const size_t size = it->size();
        if (size >= n_floats && size / 2 <= n_floats &&
            (best == idle_.end() || size < best->size())) {
          best = it;
        }
      }
      if (best != idle_.end()) {
        Buffer b = std::move(*best);
        idle_.erase(best);
        idle_floats_ -= b.size();
        in_use_floats_ += b.size();
        return b;
      }
    }
    // A new buffer, counted in use from now (another take may run while it is mapped):
    // the idle ones go, biggest first, until in use + idle is within the high-water mark
    // (all of them, if the new buffer raises it).
    unfit.reserve(idle_.size());
    in_use_floats_ += n_floats;
    high_water_ = std::max(high_water_, in_use_floats_);
    std::sort(idle_.begin(), idle_.end(),
              [](const Buffer& a, const Buffer& b) { return a.size() < b.size(); });
    while (!idle_.empty() && in_use_floats_ + idle_floats_ > high_water_) {
      idle_floats_ -= idle_.back().size();
      unfit.push_back(std::move(idle_.back()));
      idle_.pop_back();
    }
  }
  unfit.clear();
  try {
    return Buffer(n_floats);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    in_use_floats_ -= n_floats;
    throw;
  }
}

void BufferPool::give(Buffer b) noexcept {
  if (b.size() == 0) return;
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    in_use_floats_ -= std::min(in_use_floats_, b.size());
    if (b.size() <= most_idle_ && b.size() <= most_idle_total_ - idle_floats_) {
      idle_.push_back(std::move(b));  // may throw: b is then still ours, and freed
      idle_floats_ += idle_.back().size();
    }
  } catch (...) {
    // The lock or the push failed: b is simply freed.
  }
  // Whatever b still holds is freed on return, outside the lock.
}

}  // namespace gpt2cpu
