#pragma once
// One token sequence being run through a model: its KV cache and its length.
// append() runs new tokens (a whole prompt in one batched pass, or one token) and returns
// logits; the cache keeps keys and values so earlier tokens are never recomputed.

#include <cstdint>
#include <memory>
#include <mutex>

#include "gpt2cpu/buffer.h"
#include "gpt2cpu/model.h"
#include "gpt2cpu/parallel.h"

namespace gpt2cpu {

class Sequence {
 public:
  // capacity: the most tokens this sequence may hold, at most the model's n_positions.
  Sequence(std::shared_ptr<const Model> model, int64_t capacity);
  // Hands the cache and activations on to the model's next sequence.
  ~Sequence();
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t vocab_size() const { return model_->config().vocab_size; }

  // Runs ids (n) at positions [length, length + n). Writes the logits of the last
  // n_logits positions into logits (n_logits, vocab_size); n_logits in [0, n].
  // Throws std::out_of_range for ids outside the vocabulary or a full cache, and
  // std::runtime_error if another thread is using this sequence.
  void append(const int64_t* ids, int64_t n, float* logits, int64_t n_logits);

  // Forget every token from position n on (n <= length).
  void truncate(int64_t n);

 private:
  void forward(const Parallel& par, int64_t n, float* logits, int64_t n_logits);
  void forward_layer(const Parallel& par, int64_t layer, int64_t t, int64_t keep);
  float* my_h(const Parallel& par, int64_t t) const;

  std::shared_ptr<const Model> model_;
  int64_t capacity_;
  int64_t length_ = 0;
  Buffer cache_;  // (n_layer, 2, n_head, capacity, head_dim): keys then values
  // Activations of the tokens being appended, grown to the largest append seen:
  // x (t, C), h (t, C) (one per thread in a team), qkv (t, 3C), att (t, C), mlp (t, F),
  // then attention's scratch, one after the other.
  Buffer activations_;
  float *x_ = nullptr, *h_ = nullptr, *qkv_ = nullptr, *att_ = nullptr, *mlp_ = nullptr;
  float* scratch_ = nullptr;
  std::mutex busy_;
};

}  // namespace gpt2cpu
