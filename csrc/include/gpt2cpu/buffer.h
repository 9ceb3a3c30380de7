#pragma once
// An owned, 64-byte aligned, zero-initialised float array: weights, KV caches and scratch
// live in these so that SIMD loads never straddle cache lines and memory goes back to the
// system when the owner dies. Buffers come from calloc, so pages that are never written
// (the unused end of a KV cache) are never made resident; or, for weights, from 2 MiB
// transparent huge pages, which a model streamed once per token wants: 256 times fewer
// page faults while loading and TLB misses while decoding.

#include <cstddef>

namespace gpt2cpu {

class Buffer {
 public:
  enum class Pages { Normal, Huge };

  Buffer() = default;
  explicit Buffer(size_t n_floats, Pages pages = Pages::Normal) { resize(n_floats, pages); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  ~Buffer();

  // Contents are not preserved; the new memory is zero-filled. Throws std::bad_alloc.
  void resize(size_t n_floats, Pages pages = Pages::Normal);
  // Grows (losing the contents) only if fewer than n_floats are held.
  void reserve(size_t n_floats) {
    if (n_floats > size_) resize(n_floats);
  }
  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void release();

  void* raw_ = nullptr;
  size_t mapped_bytes_ = 0;  // non-zero when raw_ came from mmap
  float* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace gpt2cpu
