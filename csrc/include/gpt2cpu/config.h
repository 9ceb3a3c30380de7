#pragma once
// Hyper-parameters of a GPT-2 model, named as Hugging Face's config.json names them.

#include <cstdint>

namespace gpt2cpu {

enum class Activation { GeluTanh, GeluErf, Relu };

// pybind11 enums can be built from any integer: Activation(7) must not pass for a real one.
inline bool valid_activation(Activation a) {
  return a == Activation::GeluTanh || a == Activation::GeluErf || a == Activation::Relu;
}

// The most floats the weights, or one sequence's KV cache, may take: 256 GiB, five times
// the largest GPT-2-architecture checkpoints published, far below what a corrupt config asks.
constexpr double kMaxFloats = 68719476736.0;  // 2^36

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
  // this engine can hold (non-positive, indivisible, or absurdly large sizes, including
  // weights or a full-context KV cache beyond kMaxFloats).
  void validate() const;
};

}  // namespace gpt2cpu
