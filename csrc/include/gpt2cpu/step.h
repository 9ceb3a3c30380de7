#pragma once
// One forward step of a model over any number of sequences at once. Each sequence brings
// its own new tokens (a prompt, or one sampled token) and its own KV cache; their rows are
// concatenated, so that every matrix product reads each weight once for all of them (a
// decode step is bound by reading the weights: 16 sequences cost little more than one),
// while attention runs for each sequence against its own cache.
//
// A row's arithmetic depends only on its own sequence: what else shares the step changes
// which rows sit beside it in a matrix product, never how its outputs are summed (as long
// as the matrix products sum each output the same way on every row count).

#include <cstdint>
#include <vector>

#include "gpt2cpu/model.h"

namespace gpt2cpu {

class Sequence;

// What a step writes for each output row.
enum class StepOutput {
  Logits,     // (vocab_size): the LM head of the final layer norm's output
  Hidden,     // (n_embd): the hidden state of one layer (see StepRequest::layer)
  AllHidden,  // (n_layer + 1, n_embd): every hidden state, as Hugging Face's
              // output_hidden_states gives them (the embeddings first, the final layer
              // norm's output last)
};

struct StepRequest {
  StepOutput output = StepOutput::Logits;
  // For Hidden: 0 is the embeddings, l in [1, n_layer) the output of block l - 1, and
  // n_layer the final layer norm's output (Hugging Face's hidden_states[l]).
  int64_t layer = 0;
  // With Logits: if not null, also every hidden state, (sum of n_out, n_layer + 1, n_embd)
  // as AllHidden writes them: logits and hidden states from one pass.
  float* hidden = nullptr;
  // With Logits: if not null, each output row's argmax (KernelTable::argmax), (sum of
  // n_out): greedy sampling's pick, computed while the logits are in cache.
  int64_t* argmax = nullptr;
};

// One sequence's part of a step: ids (n) run at positions [length, length + n), and the
// outputs of the last n_out of them are wanted (0 <= n_out <= n).
struct StepInput {
  Sequence* sequence = nullptr;
  const int64_t* ids = nullptr;
  int64_t n = 0;
  int64_t n_out = 0;
};

// Floats one output row of `request` holds. Throws std::invalid_argument for a layer
// outside [0, n_layer].
int64_t step_output_width(const Config& config, const StepRequest& request);

// Runs one step: writes the outputs of every input's last n_out rows into out, one input
// after the other: (sum of n_out, step_output_width) floats. Every input is checked before
// anything runs (std::invalid_argument or std::out_of_range naming the input's index:
// a sequence of another model, a sequence given twice, ids outside the vocabulary, more
// tokens than the sequence has room for), and std::runtime_error if a sequence is in use
// by another thread; then nothing has changed. On success each sequence is n tokens longer.
void run_step(const Model& model, const std::vector<StepInput>& inputs,
              const StepRequest& request, float* out);

}  // namespace gpt2cpu
