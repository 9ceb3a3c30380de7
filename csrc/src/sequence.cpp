#include "gpt2cpu/sequence.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "gpt2cpu/ops.h"

namespace gpt2cpu {

namespace {
// How layer norms spread their work. A team's threads each normalise the few rows of x
// into their own h: cheaper than one thread doing it while the others wait at a barrier.
Parallel norm(const Parallel& par) {
  return par.in_team() ? Parallel(1, par.kernels()) : par;
}
}  // namespace

Sequence::Sequence(std::shared_ptr<const Model> model, int64_t capacity)
    : model_(std::move(model)), capacity_(capacity) {
  if (!model_ || !model_->ready()) throw std::invalid_argument("the model is not loaded");
  const Config& c = model_->config();
  if (capacity < 1 || capacity > c.n_positions) {
    throw std::invalid_argument("capacity must be in [1, " + std::to_string(c.n_positions) +
                                "] (the model's n_positions), got " + std::to_string(capacity));
  }
  // From the pool, so possibly holding another sequence's keys: only positions below
  // length_ are ever read, and each is written before it is.
  cache_ = model_->cache_pool().take(static_cast<size_t>(c.n_layer) * 2 * c.n_embd * capacity);
}

Sequence::~Sequence() {
  model_->cache_pool().give(std::move(cache_));
  model_->activation_pool().give(std::move(activations_));
}

void Sequence::append(const int64_t* ids, int64_t n, float* logits, int64_t n_logits) {
  std::unique_lock<std::mutex> lock(busy_, std::try_to_lock);
  if (!lock.owns_lock()) {
    throw std::runtime_error("this sequence is in use by another thread");
  }
  const Config& c = model_->config();
  if (n < 0 || n_logits < 0 || n_logits > n) {
    throw std::invalid_argument("need 0 <= n_logits <= n, got n=" + std::to_string(n) +
                                ", n_logits=" + std::to_string(n_logits));
  }
  if (n > capacity_ - length_) {
    throw std::out_of_range("appending " + std::to_string(n) + " tokens to a sequence holding " +
                            std::to_string(length_) + " would exceed its capacity of " +
                            std::to_string(capacity_));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= c.vocab_size) {
      throw std::out_of_range("token id " + std::to_string(ids[i]) + " at index " +
                              std::to_string(i) + " is outside the vocabulary [0, " +
                              std::to_string(c.vocab_size) + ")");
    }
  }
  if (n == 0) return;

  const int64_t C = c.n_embd;
  const int threads = usable_threads(model_->threads());
  const size_t rows = static_cast<size_t>(n);
  // Attention's scratch: the widest shape it runs on, all n rows in every block but the last.
  const AttentionShape widest{n, length_, c.n_head, c.head_dim(), capacity_, 1.0f};
  const size_t scratch = attention_scratch(widest, threads);
  // A team's threads each layer-norm into a copy of h of their own (see forward_layer).
  const bool team = n < kTeamRows;
  const size_t h_copies = team ? static_cast<size_t>(threads) : 1;
  const size_t needed = rows * static_cast<size_t>((5 + h_copies) * C + c.mlp_width()) + scratch;
  if (activations_.size() < needed) {
    model_->activation_pool().give(std::move(activations_));
    activations_ = model_->activation_pool().take(needed);
  }
  x_ = activations_.data();
  h_ = x_ + rows * C;
  qkv_ = h_ + h_copies * rows * C;
  att_ = qkv_ + rows * 3 * C;
  mlp_ = att_ + rows * C;
  scratch_ = mlp_ + rows * c.mlp_width();

  // x (n, C) = wte[ids] + wpe[positions]. A tied head stores wte packed in panels, so each
  // row is a strided gather: worth both threads for a prompt.
  const Weights& w = model_->weights();
#pragma omp parallel for schedule(static) num_threads(threads) if (n >= 64)
  for (int64_t i = 0; i < n; ++i) {
    float* xi = x_ + i * C;
    w.token_embedding(ids[i], xi);
    const float* pe = w.wpe + (length_ + i) * C;
    for (int64_t j = 0; j < C; ++j) xi[j] += pe[j];
  }
  // A few tokens (a decode step) run through the blocks in one team, which keeps its
  // threads between operators; a prompt opens a region per operator.
  // A team's integer products quantize their input into scratch the team holds.
  const size_t team_scratch = team && info(w.type()).integer
                                  ? integer_product_scratch(n, std::max(C, c.mlp_width()))
                                  : 0;
  with_parallel(
      threads, team, [&](const Parallel& par) { forward(par, n, logits, n_logits); },
      model_->kernels(), team_scratch);
  length_ += n;
}

// The blocks, then the logits of the last n_logits of the n new tokens.
void Sequence::forward(const Parallel& par, int64_t n, float* logits, int64_t n_logits) {
  const Config& c = model_->config();
  const Weights& w = model_->weights();
  // The last block's output feeds nothing but the logits: past its keys and values, only
  // the rows whose logits are wanted are computed (a 512-token prompt skips 5/6 of a block).
  for (int64_t l = 0; l < c.n_layer; ++l) {
    forward_layer(par, l, n, l + 1 < c.n_layer ? n : n_logits);
  }
  if (n_logits == 0) return;
  // logits (n_logits, V) = ln_f(x[last n_logits rows]) @ wte^T: only the rows asked for.
  const int64_t C = c.n_embd;
  const float* last = x_ + (n - n_logits) * C;
  float* h = my_h(par, n);
  layernorm(h, last, w.ln_f_weight, w.ln_f_bias, n_logits, C, c.layer_norm_epsilon, norm(par));
  matmul(logits, c.vocab_size, h, C, n_logits, w.lm_head, nullptr, Accumulate::No, par);
}

// This thread's h: a team's threads each have their own (see norm()).
float* Sequence::my_h(const Parallel& par, int64_t t) const {
  return h_ + (par.in_team() ? par.rank() * t * model_->config().n_embd : 0);
}

// One transformer block over the t new tokens in x_, at positions [length_, length_ + t).
// Every token's keys and values go into the cache; the block's output is computed for the
// last `keep` rows only (the rows before them are left as they were).
void Sequence::forward_layer(const Parallel& par, int64_t layer, int64_t t, int64_t keep) {
  const Config& c = model_->config();
  const LayerWeights& L = model_->weights().layers[static_cast<size_t>(layer)];
  const int64_t C = c.n_embd, F = c.mlp_width(), H = c.n_head, D = c.head_dim();
  float* x = x_;
  float* h = my_h(par, t);
  float* qkv = qkv_;

  // qkv (t, 3C) = ln_1(x) @ c_attn + b; the rows not kept need no queries, only keys and
  // values (columns [C, 3C)), where C starts a weight panel.
  layernorm(h, x, L.ln_1_weight, L.ln_1_bias, t, C, c.layer_norm_epsilon, norm(par));
  const int64_t skip = t - keep;
  if (skip > 0 && C % kPanel == 0) {
    const float* kv_bias = L.attn_c_attn_bias != nullptr ? L.attn_c_attn_bias + C : nullptr;
    matmul(qkv + C, 3 * C, h, C, skip, L.attn_c_attn.columns(C, 2 * C), kv_bias,
           Accumulate::No, par);
    matmul(qkv + skip * 3 * C, 3 * C, h + skip * C, C, keep, L.attn_c_attn,
           L.attn_c_attn_bias, Accumulate::No, par);
  } else {
    matmul(qkv, 3 * C, h, C, t, L.attn_c_attn, L.attn_c_attn_bias, Accumulate::No, par);
  }

  // Keys and values of the new tokens go into the cache.
  float* keys = cache_.data() + (layer * 2 + 0) * C * capacity_;
  float* values = cache_.data() + (layer * 2 + 1) * C * capacity_;
  float scale = c.scale_attn_weights ? 1.0f / std::sqrt(static_cast<float>(D)) : 1.0f;
  if (c.scale_attn_by_inverse_layer_idx) scale /= static_cast<float>(layer + 1);
  store_keys_values(keys, values, qkv + C, qkv + 2 * C, 3 * C,
                    AttentionShape{t, length_, H, D, capacity_, scale}, par);

  if (keep == 0) return;
  // From here on only the last `keep` rows: queries at positions [length_ + t - keep, ...).
  x += skip * C;
  const AttentionShape shape{keep, length_ + skip, H, D, capacity_, scale};
  attention(att_, qkv + skip * 3 * C, 3 * C, keys, values, shape, par, scratch_);

  // x += att @ c_proj + b;  x += act(ln_2(x) @ c_fc + b) @ mlp.c_proj + b
  matmul(x, C, att_, C, keep, L.attn_c_proj, L.attn_c_proj_bias, Accumulate::Yes, par);
  layernorm(h, x, L.ln_2_weight, L.ln_2_bias, keep, C, c.layer_norm_epsilon, norm(par));
  matmul_activate(mlp_, F, h, C, keep, L.mlp_c_fc, L.mlp_c_fc_bias, c.activation, par);
  matmul(x, C, mlp_, F, keep, L.mlp_c_proj, L.mlp_c_proj_bias, Accumulate::Yes, par);
}

void Sequence::truncate(int64_t n) {
  std::unique_lock<std::mutex> lock(busy_, std::try_to_lock);
  if (!lock.owns_lock()) throw std::runtime_error("this sequence is in use by another thread");
  if (n < 0 || n > length_) {
    throw std::out_of_range("cannot truncate a sequence of length " + std::to_string(length_) +
                            " to " + std::to_string(n));
  }
  length_ = n;
}

}  // namespace gpt2cpu
