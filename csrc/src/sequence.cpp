#include "gpt2cpu/sequence.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace gpt2cpu {

namespace {
// Caches are allocated in whole multiples of this many positions, at least one: a decode
// step after a prompt should not grow its cache every few tokens (growing copies it).
constexpr int64_t kAllocationStep = 64;
}  // namespace

Sequence::Sequence(std::shared_ptr<const Model> model, int64_t capacity)
    : model_(std::move(model)), capacity_(capacity) {
  if (!model_ || !model_->ready()) throw std::invalid_argument("the model is not loaded");
  const Config& c = model_->config();
  if (capacity < 1 || capacity > c.n_positions) {
    throw std::invalid_argument("capacity must be in [1, " + std::to_string(c.n_positions) +
                                "] (the model's n_positions), got " + std::to_string(capacity));
  }
}

Sequence::~Sequence() { model_->cache_pool().give(std::move(cache_)); }

void Sequence::reserve(int64_t positions) {
  if (positions <= allocated_) return;
  int64_t want = allocated_ * 2;
  if (want < positions) want = positions;
  want = (want + kAllocationStep - 1) / kAllocationStep * kAllocationStep;
  if (want > capacity_) want = capacity_;
  const size_t per_position = static_cast<size_t>(model_->kv_bytes_per_position());
  // From the pool, so possibly holding another sequence's keys: only positions below
  // length_ are ever read, and each is written before it is. The pool may hand over more
  // than asked for: whatever fits is used.
  const size_t bytes_wanted = per_position * static_cast<size_t>(want);
  Buffer grown = model_->cache_pool().take((bytes_wanted + sizeof(float) - 1) / sizeof(float));
  int64_t fits = static_cast<int64_t>(grown.size() * sizeof(float) / per_position);
  if (fits > capacity_) fits = capacity_;
  copy_blocks(grown, fits);
  model_->cache_pool().give(std::move(cache_));
  cache_ = std::move(grown);
  allocated_ = fits;
}

void Sequence::copy_blocks(Buffer& to, int64_t to_allocated) {
  if (length_ == 0) return;
  const KvLayout from_layout = layout(allocated_), to_layout = layout(to_allocated);
  const size_t rows = static_cast<size_t>(length_ * from_layout.row_bytes);
  const bool scaled = info(model_->kv_type()).scaled;
  for (int64_t b = 0; b < blocks(); ++b) {
    char* into = block_of(to, to_allocated, b);
    const char* from = block(b);
    std::memcpy(into, from, rows);
    if (scaled) {
      std::memcpy(into + to_layout.scales_at, from + from_layout.scales_at,
                  static_cast<size_t>(length_) * sizeof(float));
    }
  }
}

void Sequence::append(const int64_t* ids, int64_t n, float* logits, int64_t n_logits) {
  StepInput input;
  input.sequence = this;
  input.ids = ids;
  input.n = n;
  input.n_out = n_logits;
  run_step(*model_, {input}, StepRequest{}, logits);
}

std::unique_lock<std::mutex> Sequence::hold() {
  std::unique_lock<std::mutex> lock(busy_, std::try_to_lock);
  if (!lock.owns_lock()) throw std::runtime_error("this sequence is in use by another thread");
  return lock;
}

void Sequence::truncate(int64_t n) {
  const auto held = hold();
  if (n < 0 || n > length_) {
    throw std::out_of_range("cannot truncate a sequence of length " + std::to_string(length_) +
                            " to " + std::to_string(n));
  }
  length_ = n;
}

void Sequence::reserve_room(int64_t positions) {
  const auto held = hold();
  if (positions < 0 || positions > capacity_) {
    throw std::out_of_range("cannot reserve room for " + std::to_string(positions) +
                            " tokens in a sequence of capacity " + std::to_string(capacity_));
  }
  reserve(positions);
}

std::unique_ptr<Sequence> Sequence::fork() {
  const auto held = hold();
  auto copy = std::make_unique<Sequence>(model_, capacity_);
  // This one's room, not just its tokens': a sequence reserved for what it will hold (n
  // samples of a prompt, a server's cached prefix) forks into one that need not grow, and
  // copy itself again, either. Pages past the copied tokens stay untouched: no memory.
  copy->reserve(allocated_);
  if (length_ == 0) return copy;
  copy_blocks(copy->cache_, copy->allocated_);
  copy->length_ = length_;
  return copy;
}

}  // namespace gpt2cpu
