#include "gpt2cpu/buffer.h"

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <utility>

namespace gpt2cpu {

namespace {
constexpr size_t kAlign = 64;
}

Buffer::Buffer(Buffer&& other) noexcept
    : raw_(std::exchange(other.raw_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    std::free(raw_);
    raw_ = std::exchange(other.raw_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

Buffer::~Buffer() { std::free(raw_); }

void Buffer::resize(size_t n_floats) {
  std::free(raw_);
  raw_ = nullptr;
  data_ = nullptr;
  size_ = 0;
  if (n_floats == 0) return;
  if (n_floats > (std::numeric_limits<size_t>::max() - kAlign) / sizeof(float)) {
    throw std::bad_alloc();
  }
  // calloc, not aligned_alloc + memset: large blocks come zeroed from fresh pages untouched.
  raw_ = std::calloc(n_floats * sizeof(float) + kAlign, 1);
  if (raw_ == nullptr) throw std::bad_alloc();
  const auto addr = reinterpret_cast<uintptr_t>(raw_);
  data_ = reinterpret_cast<float*>((addr + kAlign - 1) & ~(uintptr_t)(kAlign - 1));
  size_ = n_floats;
}

}  // namespace gpt2cpu
