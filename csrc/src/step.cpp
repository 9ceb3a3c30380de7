#include "gpt2cpu/step.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "gpt2cpu/ops.h"
#include "gpt2cpu/sequence.h"

namespace gpt2cpu {

namespace {

// How layer norms spread their work. A team's threads each normalise the few rows of x
// into their own h: cheaper than one thread doing it while the others wait at a barrier.
Parallel norm(const Parallel& par) {
  return par.in_team() ? Parallel(1, par.kernels()) : par;
}

std::string at(size_t i) { return "inputs[" + std::to_string(i) + "]: "; }

// Gives the activations back to the model's pool however the step ends.
struct Lease {
  const Model& model;
  Buffer buffer;
  ~Lease() { model.activation_pool().give(std::move(buffer)); }
};

// One step, planned before any thread runs it: everything a team's threads read is laid
// out here, so that nothing inside the region allocates or throws.
class Run {
 public:
  Run(const Model& model, const std::vector<StepInput>& inputs, const StepRequest& request,
      float* out)
      : model_(model), c_(model.config()), inputs_(inputs), request_(request), out_(out) {}

  void plan();
  void execute();

 private:
  void layer(const Parallel& par, int64_t l);
  void capture(const Parallel& par, int64_t hidden_index);
  void finish(const Parallel& par);
  // Moves each input's output rows to the front of rows (of `width` floats), in order: the
  // last block's compact rows.
  void compact(const Parallel& par, float* rows, int64_t width);
  float* my_h(const Parallel& par) const {
    return h_ + (par.in_team() ? par.rank() * rows_ * c_.n_embd : 0);
  }
  bool output_needs_last_block() const {
    return request_.output != StepOutput::Hidden || request_.layer == c_.n_layer;
  }

  const Model& model_;
  const Config& c_;
  const std::vector<StepInput>& inputs_;
  const StepRequest& request_;
  float* out_;
  int64_t width_ = 0;
  float* all_ = nullptr;  // where every hidden state goes, if anywhere
  int64_t all_width_ = 0;
  int64_t rows_ = 0;       // new tokens of all inputs: the rows of x
  int64_t out_rows_ = 0;   // the rows whose outputs are wanted
  int64_t last_keep_ = 0;  // rows the last block computes past its keys and values
  bool team_ = false;
  // Read once: another thread may change the model's thread count while this step runs,
  // and the scratch and h copies are sized for this many.
  int threads_ = 1;
  std::vector<int64_t> row0_;  // each input's first row in x
  std::vector<int64_t> out0_;  // each input's first output row
  std::vector<AttentionJob> attention_;  // n_layer x inputs with rows, in that order
  std::vector<KeyValueJob> key_values_;  // the same
  int64_t jobs_per_layer_ = 0;
  Lease activations_{model_, Buffer()};
  float *x_ = nullptr, *h_ = nullptr, *qkv_ = nullptr, *att_ = nullptr, *mlp_ = nullptr;
  float* scratch_ = nullptr;
};

void Run::plan() {
  const int64_t C = c_.n_embd, H = c_.n_head, D = c_.head_dim();
  width_ = step_output_width(c_, request_);
  all_width_ = (c_.n_layer + 1) * C;
  if (request_.output == StepOutput::AllHidden) all_ = out_;
  if (request_.output == StepOutput::Logits) all_ = request_.hidden;
  row0_.resize(inputs_.size());
  out0_.resize(inputs_.size());
  for (size_t i = 0; i < inputs_.size(); ++i) {
    row0_[i] = rows_;
    out0_[i] = out_rows_;
    rows_ += inputs_[i].n;
    out_rows_ += inputs_[i].n_out;
  }
  last_keep_ = output_needs_last_block() ? out_rows_ : 0;
  team_ = rows_ < kTeamRows;
  threads_ = usable_threads(model_.threads());
  const int threads = threads_;

  // Attention and the cache writes of every block, each input against its own cache. The
  // last block attends from the output rows only, which by then sit compacted at the front.
  const bool compacting = last_keep_ < rows_;
  const KvType kv = model_.kv_type();
  size_t scratch = 0;
  for (int64_t l = 0; l < c_.n_layer; ++l) {
    const bool last = l + 1 == c_.n_layer;
    float scale = c_.scale_attn_weights ? 1.0f / std::sqrt(static_cast<float>(D)) : 1.0f;
    if (c_.scale_attn_by_inverse_layer_idx) scale /= static_cast<float>(l + 1);
    const size_t first = attention_.size();
    for (size_t i = 0; i < inputs_.size(); ++i) {
      const StepInput& in = inputs_[i];
      if (in.n == 0) continue;
      Sequence& seq = *in.sequence;
      const int64_t pos0 = seq.length();
      const AttentionShape all{in.n, pos0, H, D, seq.allocated(), scale, kv};
      key_values_.push_back(KeyValueJob{seq.keys(l), seq.values(l), nullptr, nullptr, 3 * C, all});
      // The queries' rows (filled in by layer(), once qkv_ exists): every new token, or in
      // a compacted last block the output rows only, at the end of the new tokens.
      const int64_t t = last ? (compacting ? (last_keep_ == 0 ? 0 : in.n_out) : in.n) : in.n;
      const AttentionShape shape{t, pos0 + in.n - t, H, D, seq.allocated(), scale, kv};
      attention_.push_back(AttentionJob{nullptr, nullptr, 3 * C, seq.keys(l), seq.values(l), shape});
    }
    const size_t count = attention_.size() - first;
    jobs_per_layer_ = static_cast<int64_t>(count);
    scratch = std::max(scratch, plan_attention(attention_.data() + first,
                                               static_cast<int64_t>(count), threads));
  }

  // Activations: x (rows, C), h (rows, C) once per thread of a team (see layer()), qkv
  // (rows, 3C), att (rows, C), mlp (rows, F), then attention's scratch.
  const size_t rows = static_cast<size_t>(rows_);
  const size_t h_copies = team_ ? static_cast<size_t>(threads) : 1;
  const size_t needed = rows * ((5 + h_copies) * C + c_.mlp_width()) + scratch;
  activations_.buffer = model_.activation_pool().take(needed);
  x_ = activations_.buffer.data();
  h_ = x_ + rows * C;
  qkv_ = h_ + h_copies * rows * C;
  att_ = qkv_ + rows * 3 * C;
  mlp_ = att_ + rows * C;
  scratch_ = mlp_ + rows * c_.mlp_width();

  // Now that qkv_ and att_ exist: where each job reads and writes.
  for (int64_t l = 0; l < c_.n_layer; ++l) {
    const bool last = l + 1 == c_.n_layer;
    int64_t j = l * jobs_per_layer_;
    for (size_t i = 0; i < inputs_.size(); ++i) {
      if (inputs_[i].n == 0) continue;
      KeyValueJob& kv = key_values_[static_cast<size_t>(j)];
      kv.new_k = qkv_ + row0_[i] * 3 * C + C;
      kv.new_v = qkv_ + row0_[i] * 3 * C + 2 * C;
      AttentionJob& a = attention_[static_cast<size_t>(j)];
      const int64_t q_row = last && compacting ? out0_[i] : row0_[i];
      a.q = qkv_ + q_row * 3 * C;
      a.out = att_ + q_row * C;
      ++j;
    }
  }
}

void Run::execute() {
  const int64_t C = c_.n_embd;
  const Weights& w = model_.weights();
  // x (rows, C) = wte[ids] + wpe[positions]. A tied head stores wte packed in panels, so
  // each row is a strided gather: worth both threads for a prompt.
#pragma omp parallel for schedule(static) num_threads(threads_) if (rows_ >= 64)
  for (int64_t r = 0; r < rows_; ++r) {
    const size_t i = static_cast<size_t>(std::upper_bound(row0_.begin(), row0_.end(), r) -
                                         row0_.begin()) - 1;
    const StepInput& in = inputs_[i];
    const int64_t j = r - row0_[i];
    float* xr = x_ + r * C;
    w.token_embedding(in.ids[j], xr);
    const float* pe = w.wpe + (in.sequence->length() + j) * C;
    for (int64_t k = 0; k < C; ++k) xr[k] += pe[k];
  }
  // A few rows (a decode step) run through the blocks in one team, which keeps its threads
  // between operators; a prompt opens a region per operator.
  // A team's products prepare their input in scratch the team holds.
  const size_t team_scratch =
      team_ ? product_scratch(rows_, std::max(C, c_.mlp_width()), w.type(), threads_) : 0;
  with_parallel(
      threads_, team_,
      [&](const Parallel& par) {
        capture(par, 0);
        for (int64_t l = 0; l < c_.n_layer; ++l) {
          layer(par, l);
          if (l + 1 < c_.n_layer) capture(par, l + 1);
        }
        finish(par);
      },
      model_.kernels(), team_scratch);
}

// Copies the output rows of x, the hidden state `index` (0: the embeddings), where the
// request wants it.
void Run::capture(const Parallel& par, int64_t index) {
  const bool one = request_.output == StepOutput::Hidden && request_.layer == index;
  if ((!one && all_ == nullptr) || out_rows_ == 0) return;
  const int64_t C = c_.n_embd;
  par.run(
      [&](const Share&) {
        for (size_t i = 0; i < inputs_.size(); ++i) {
          const StepInput& in = inputs_[i];
          for (int64_t r = 0; r < in.n_out; ++r) {
            const float* row = x_ + (row0_[i] + in.n - in.n_out + r) * C;
            const int64_t o = out0_[i] + r;
            if (one) std::memcpy(out_ + o * width_, row, sizeof(float) * C);
            if (all_ != nullptr) std::memcpy(all_ + o * all_width_ + index * C, row, sizeof(float) * C);
          }
        }
      },
      false);
}

void Run::compact(const Parallel& par, float* rows, int64_t width) {
  par.run(
      [&](const Share&) {
        // Row out0 + r comes from row row0 + n - n_out + r, never before it: moving rows in
        // increasing order never overwrites one not yet moved.
        for (size_t i = 0; i < inputs_.size(); ++i) {
          const StepInput& in = inputs_[i];
          for (int64_t r = 0; r < in.n_out; ++r) {
            const int64_t to = out0_[i] + r, from = row0_[i] + in.n - in.n_out + r;
            if (to != from) {
              std::memmove(rows + to * width, rows + from * width, sizeof(float) * width);
            }
          }
        }
      },
      false);
}

// One transformer block over every row of x. In the last block, if only some rows' outputs
// are wanted, every row's keys and values go into the caches, and the block's output is
// computed for the wanted rows alone, moved to the front of x (a 512-token prompt skips
// 5/6 of a block; the LM head then reads compact rows).
void Run::layer(const Parallel& par, int64_t l) {
  const LayerWeights& L = model_.weights().layers[static_cast<size_t>(l)];
  const int64_t C = c_.n_embd, F = c_.mlp_width();
  const bool last = l + 1 == c_.n_layer;
  const int64_t keep = last ? last_keep_ : rows_;
  float* h = my_h(par);
  const AttentionJob* jobs = attention_.data() + l * jobs_per_layer_;
  const KeyValueJob* kv_jobs = key_values_.data() + l * jobs_per_layer_;

  // qkv (rows, 3C) = ln_1(x) @ c_attn + b
  layernorm(h, x_, L.ln_1_weight, L.ln_1_bias, rows_, C, c_.layer_norm_epsilon, norm(par));
  if (keep == rows_) {
    matmul(qkv_, 3 * C, h, C, rows_, L.attn_c_attn, L.attn_c_attn_bias, Accumulate::No, par);
    store_keys_values_many(kv_jobs, jobs_per_layer_, par);
  } else if (C % kPanel == 0) {
    // Keys and values (columns [C, 3C), where C starts a weight panel) of every row; the
    // queries of the kept rows only.
    const float* kv_bias = L.attn_c_attn_bias != nullptr ? L.attn_c_attn_bias + C : nullptr;
    matmul(qkv_ + C, 3 * C, h, C, rows_, L.attn_c_attn.columns(C, 2 * C), kv_bias,
           Accumulate::No, par);
    store_keys_values_many(kv_jobs, jobs_per_layer_, par);
    if (keep == 0) return;
    compact(par, x_, C);
    layernorm(h, x_, L.ln_1_weight, L.ln_1_bias, keep, C, c_.layer_norm_epsilon, norm(par));
    matmul(qkv_, 3 * C, h, C, keep, L.attn_c_attn.columns(0, C), L.attn_c_attn_bias,
           Accumulate::No, par);
  } else {
    matmul(qkv_, 3 * C, h, C, rows_, L.attn_c_attn, L.attn_c_attn_bias, Accumulate::No, par);
    store_keys_values_many(kv_jobs, jobs_per_layer_, par);
    if (keep == 0) return;
    compact(par, x_, C);
    compact(par, qkv_, 3 * C);
  }

  attention_many(jobs, jobs_per_layer_, par, scratch_);
  // x += att @ c_proj + b;  x += act(ln_2(x) @ c_fc + b) @ mlp.c_proj + b
  matmul(x_, C, att_, C, keep, L.attn_c_proj, L.attn_c_proj_bias, Accumulate::Yes, par);
  layernorm(h, x_, L.ln_2_weight, L.ln_2_bias, keep, C, c_.layer_norm_epsilon, norm(par));
  matmul_activate(mlp_, F, h, C, keep, L.mlp_c_fc, L.mlp_c_fc_bias, c_.activation, par);
  matmul(x_, C, mlp_, F, keep, L.mlp_c_proj, L.mlp_c_proj_bias, Accumulate::Yes, par);
}

// The final layer norm of the output rows (compact at the front of x by now, if the last
// block needed them), and what the request wants of it.
void Run::finish(const Parallel& par) {
  if (last_keep_ == 0) return;
  const Weights& w = model_.weights();
  const int64_t C = c_.n_embd;
  float* h = my_h(par);
  layernorm(h, x_, w.ln_f_weight, w.ln_f_bias, out_rows_, C, c_.layer_norm_epsilon, norm(par));
  const bool one = request_.output == StepOutput::Hidden;  // the layer is n_layer then
  if (one || all_ != nullptr) {
    par.run(
        [&](const Share&) {
          for (int64_t r = 0; r < out_rows_; ++r) {
            if (one) std::memcpy(out_ + r * width_, h + r * C, sizeof(float) * C);
            if (all_ != nullptr) {
              std::memcpy(all_ + r * all_width_ + c_.n_layer * C, h + r * C, sizeof(float) * C);
            }
          }
        },
        false);
  }
  if (request_.output == StepOutput::Logits) {
    matmul(out_, width_, h, C, out_rows_, w.lm_head, nullptr, Accumulate::No, par);
    if (request_.argmax != nullptr) {
      par.run([&](const Share& share) {
        for (int64_t r = share.begin(out_rows_); r < share.end(out_rows_); ++r) {
          request_.argmax[r] = par.kernels().argmax(out_ + r * width_, width_);
        }
      });
    }
  }
}

}  // namespace

int64_t step_output_width(const Config& config, const StepRequest& request) {
  switch (request.output) {
    case StepOutput::Logits:
      return config.vocab_size;
    case StepOutput::Hidden:
      if (request.layer < 0 || request.layer > config.n_layer) {
        throw std::invalid_argument("layer must be in [0, " + std::to_string(config.n_layer) +
                                    "] (0: the embeddings), got " +
                                    std::to_string(request.layer));
      }
      return config.n_embd;
    case StepOutput::AllHidden:
      return (config.n_layer + 1) * config.n_embd;
  }
  throw std::invalid_argument("unknown step output");
}

void run_step(const Model& model, const std::vector<StepInput>& inputs,
              const StepRequest& request, float* out) {
  const Config& c = model.config();
  step_output_width(c, request);  // checks the layer
  // Checks first, so that a bad input changes nothing.
  std::vector<Sequence*> seen;
  seen.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const StepInput& in = inputs[i];
    if (in.sequence == nullptr) throw std::invalid_argument(at(i) + "no sequence");
    if (in.sequence->model().get() != &model) {
      throw std::invalid_argument(at(i) + "the sequence belongs to another model");
    }
    if (in.n < 0 || in.n_out < 0 || in.n_out > in.n) {
      throw std::invalid_argument(at(i) + "need 0 <= n_out <= n, got n=" + std::to_string(in.n) +
                                  ", n_out=" + std::to_string(in.n_out));
    }
    if (in.n > 0 && in.ids == nullptr) throw std::invalid_argument(at(i) + "no ids");
    seen.push_back(in.sequence);
  }
  std::sort(seen.begin(), seen.end());
  for (size_t i = 1; i < seen.size(); ++i) {
    if (seen[i] == seen[i - 1]) {
      bool first = true;  // names the second time it appears
      for (size_t j = 0; j < inputs.size(); ++j) {
        if (inputs[j].sequence != seen[i]) continue;
        if (!first) {
          throw std::invalid_argument(at(j) + "the same sequence appears twice in one step");
        }
        first = false;
      }
    }
  }
  // Each sequence is this step's alone until it ends.
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    try {
      locks.push_back(inputs[i].sequence->hold());
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(at(i) + e.what());
    }
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    const StepInput& in = inputs[i];
    const Sequence& seq = *in.sequence;
    if (in.n > seq.capacity() - seq.length()) {
      throw std::out_of_range(at(i) + "appending " + std::to_string(in.n) +
                              " tokens to a sequence holding " + std::to_string(seq.length()) +
                              " would exceed its capacity of " + std::to_string(seq.capacity()));
    }
    for (int64_t r = 0; r < in.n; ++r) {
      if (in.ids[r] < 0 || in.ids[r] >= c.vocab_size) {
        throw std::out_of_range(at(i) + "token id " + std::to_string(in.ids[r]) + " at index " +
                                std::to_string(r) + " is outside the vocabulary [0, " +
                                std::to_string(c.vocab_size) + ")");
      }
    }
  }
  int64_t rows = 0;
  for (const StepInput& in : inputs) rows += in.n;
  if (rows == 0) return;
  // Growing keeps what each cache holds, so a bad_alloc here leaves every sequence as it was.
  for (const StepInput& in : inputs) in.sequence->reserve(in.sequence->length() + in.n);

  Run run(model, inputs, request, out);
  run.plan();
  run.execute();
  for (const StepInput& in : inputs) in.sequence->length_ += in.n;
}

}  // namespace gpt2cpu
