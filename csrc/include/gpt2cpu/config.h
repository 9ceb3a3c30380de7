#pragma once
// Hyper-parameters of a GPT-2 model, named as Hugging Face's config.json names them.

#include <cstdint>

namespace gpt2cpu {

enum class Activation { GeluTanh, GeluErf, Relu };

struct Config {
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_embd = 0;
  int64_t n_positions = 0;  // context length
  int64_t vocab_size = 0;
  int64_t n_inner = 0;      // width of the MLP; 0 means 4 * n_embd
  float layer_norm_epsilon = 1e-5f;
  Activation activation = Activation::GeluTanh;
  bool scale_attn_weights = true;                  // divide scores by sqrt(head_dim)
  bool scale_attn_by_inverse_layer_idx = false;    // and by (layer index + 1)
  bool tie_word_embeddings = true;                 // LM head is wte

  int64_t head_dim() const { return n_embd / n_head; }
  int64_t mlp_width() const { return n_inner > 0 ? n_inner : 4 * n_embd; }

  // Throws std::invalid_argument naming the field when the values cannot describe a model
  // this engine can hold (non-positive, indivisible, or absurdly large sizes).
  void validate() const;
};

}  // namespace gpt2cpu
