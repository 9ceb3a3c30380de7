#include "gpt2cpu/buffer.h"

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace gpt2cpu {

namespace {
constexpr size_t kAlign = 64;
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kMapMin = size_t{1} << 20;

uintptr_t align_up(uintptr_t p, size_t a) { return (p + a - 1) & ~static_cast<uintptr_t>(a - 1); }
}  // namespace

Buffer::Buffer(Buffer&& other) noexcept
    : raw_(std::exchange(other.raw_, nullptr)),
      mapped_bytes_(std::exchange(other.mapped_bytes_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    raw_ = std::exchange(other.raw_, nullptr);
    mapped_bytes_ = std::exchange(other.mapped_bytes_, 0);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

Buffer::~Buffer() { release(); }

void Buffer::release() {
#if defined(__linux__)
  if (mapped_bytes_ != 0) {
    munmap(raw_, mapped_bytes_);
  } else {
    std::free(raw_);
  }
#else
  std::free(raw_);
#endif
  raw_ = nullptr;
  mapped_bytes_ = 0;
  data_ = nullptr;
  size_ = 0;
}

void Buffer::resize(size_t n_floats, Pages pages) {
  release();
  if (n_floats == 0) return;
  if (n_floats > (std::numeric_limits<size_t>::max() - kHugePage) / sizeof(float)) {
    throw std::bad_alloc();
  }
  const size_t bytes = n_floats * sizeof(float);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (pages == Pages::Huge && bytes >= kHugePage) {
    // Anonymous mappings are zero-filled; over-allocate to start on a huge-page boundary.
    const size_t mapped = bytes + kHugePage;
    void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    raw_ = p;
    mapped_bytes_ = mapped;
    data_ = reinterpret_cast<float*>(align_up(reinterpret_cast<uintptr_t>(p), kHugePage));
    madvise(data_, bytes, MADV_HUGEPAGE);  // advice only: ignored where THP is off
    size_ = n_floats;
    return;
  }
#else
  (void)pages;
#endif
#if defined(__linux__) && !defined(__SANITIZE_ADDRESS__)
  if (bytes >= kMapMin) {
    // Mapped directly so that freeing returns the pages to the system at once: after one
    // large free glibc raises its mmap threshold (up to 32 MiB) and would keep later KV
    // caches and activations in its heap. Not under ASan, whose redzones guard malloc only.
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    raw_ = p;
    mapped_bytes_ = bytes;
    data_ = static_cast<float*>(p);  // page-aligned
    size_ = n_floats;
    return;
  }
#endif
  // calloc, not aligned_alloc + memset: large blocks come zeroed from fresh pages untouched.
  raw_ = std::calloc(bytes + kAlign, 1);
  if (raw_ == nullptr) throw std::bad_alloc();
  data_ = reinterpret_cast<float*>(align_up(reinterpret_cast<uintptr_t>(raw_), kAlign));
  size_ = n_floats;
}

}  // namespace gpt2cpu
