#pragma once
// Memory that one model's sequences hand on to each other. A sequence's KV cache and
// activations are tens of MB: mapping them afresh for every sequence makes the kernel
// zero each page on first touch, which cost ~5% of a 512-token prompt at 124M. The pool
// keeps one idle buffer, so the next sequence reuses the last one's pages; anything more
// goes back to the system, and the rest goes when the model does.

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>

#include "gpt2cpu/buffer.h"

namespace gpt2cpu {

class BufferPool {
 public:
  // most_idle_floats: a buffer bigger than this is freed when given back, never kept idle.
  explicit BufferPool(size_t most_idle_floats = SIZE_MAX) : most_idle_(most_idle_floats) {}
  // A buffer of at least n_floats: the idle one if it is big enough but not more than
  // twice that, holding whatever its last user left in it; else a new zero-filled one
  // (and the idle one is freed). Throws std::bad_alloc.
  Buffer take(size_t n_floats);
  // Keeps b for the next take if it is the biggest buffer around: bigger than the idle one
  // and than every buffer still in use (which a later take is likelier to ask for). Else
  // frees it, so an idle buffer never adds to peak memory beside a bigger one in use.
  void give(Buffer b) noexcept;

 private:
  const size_t most_idle_;
  std::mutex mutex_;
  Buffer idle_;
  std::multiset<size_t> in_use_;  // sizes of the buffers taken and not yet given back
};

}  // namespace gpt2cpu
