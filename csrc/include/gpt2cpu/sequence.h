#pragma once
// One token sequence being run through a model: its KV cache and its length. The forward
// pass itself is the model's step (step.h), which advances any number of sequences at
// once; append() is a step of this sequence alone.
//
// The cache holds what the sequence has room for so far, not its whole capacity: it grows
// (doubling, copied once) as tokens are added, so that many short sequences fit where as
// many full-context caches would not.

#include <cstdint>
#include <memory>
#include <mutex>

#include "gpt2cpu/buffer.h"
#include "gpt2cpu/model.h"
#include "gpt2cpu/step.h"

namespace gpt2cpu {

class Sequence {
 public:
  // capacity: the most tokens this sequence may hold, at most the model's n_positions.
  Sequence(std::shared_ptr<const Model> model, int64_t capacity);
  // Hands the cache on to the model's next sequence.
  ~Sequence();
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t vocab_size() const { return model_->config().vocab_size; }
  const std::shared_ptr<const Model>& model() const { return model_; }
  // Positions the cache has memory for now (<= capacity).
  int64_t allocated() const { return allocated_; }
  // Bytes those positions take: keys and values of every layer in the model's kv type.
  int64_t cache_bytes() const { return allocated_ * model_->kv_bytes_per_position(); }

  // Runs ids (n) at positions [length, length + n): a step of this sequence alone. Writes
  // the logits of the last n_logits positions into logits (n_logits, vocab_size); n_logits
  // in [0, n]. Throws as run_step does.
  void append(const int64_t* ids, int64_t n, float* logits, int64_t n_logits);

  // Forget every token from position n on (n <= length).
  void truncate(int64_t n);

  // Memory for `positions` tokens now (0 <= positions <= capacity), where the caller knows
  // what the sequence will hold: a cache grown as tokens come is copied at each doubling,
  // and a 16-sequence decode step that grew 64 -> 128 -> 144 positions ran ~10% slower
  // than one that had its room from the start. Fresh pages become resident only as tokens
  // are written, so room reserved and never used costs no memory. Throws as truncate
  // does, and std::bad_alloc (the cache unchanged).
  void reserve_room(int64_t positions);

  // A new sequence holding the same tokens, with a copy of this one's keys and values and
  // as much room: copying the cache costs ~1% of computing it again (see README), and the
  // two then diverge without sharing anything.
  std::unique_ptr<Sequence> fork();

  // The cache of layer `layer`, for the step: keys, then values, each (n_head, allocated,
  // head_dim) elements of the model's kv type; positions [0, length) are filled.
  void* keys(int64_t layer) { return block((layer * 2 + 0) * model_->config().n_head); }
  void* values(int64_t layer) { return block((layer * 2 + 1) * model_->config().n_head); }

 private:
  friend void run_step(const Model&, const std::vector<StepInput>&, const StepRequest&, float*);

  // This sequence held for the caller alone until the lock goes: std::runtime_error if
  // another thread holds it (a sequence takes one operation at a time).
  std::unique_lock<std::mutex> hold();
  // Grows the cache, keeping its contents, so that it has room for `positions` tokens
  // (<= capacity). Throws std::bad_alloc; the cache is unchanged then.
  void reserve(int64_t positions);
  // Block b of a cache with room for `allocated` positions: the rows of one (layer, keys or
  // values, head), then a scaled type's scales (kv_type.h: KvLayout).
  char* block(int64_t b) { return block_of(cache_, allocated_, b); }
  char* block_of(Buffer& cache, int64_t allocated, int64_t b) const {
    return reinterpret_cast<char*>(cache.data()) + b * layout(allocated).block_bytes;
  }
  KvLayout layout(int64_t allocated) const {
    return KvLayout(model_->kv_type(), model_->config().head_dim(), allocated);
  }
  // Copies the first length_ positions of every block (rows and scales) into `to`, a cache
  // with room for to_allocated positions.
  void copy_blocks(Buffer& to, int64_t to_allocated);
  int64_t blocks() const { return model_->config().n_layer * 2 * model_->config().n_head; }

  std::shared_ptr<const Model> model_;
  int64_t capacity_;
  int64_t allocated_ = 0;
  int64_t length_ = 0;
  Buffer cache_;  // (n_layer, 2, n_head) blocks: keys then values
  std::mutex busy_;
};

}  // namespace gpt2cpu
