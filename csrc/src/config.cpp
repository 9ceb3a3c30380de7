#include "gpt2cpu/config.h"

#include <stdexcept>
#include <string>

namespace gpt2cpu {

namespace {
// Far beyond any GPT-2-family model, small enough that no size computation overflows.
constexpr int64_t kMaxDim = int64_t{1} << 20;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxLayers = 4096;

void check_range(const char* field, int64_t value, int64_t max) {
  if (value <= 0 || value > max) {
    throw std::invalid_argument(std::string(field) + " must be in [1, " + std::to_string(max) +
                                "], got " + std::to_string(value));
  }
}
}  // namespace

void Config::validate() const {
  check_range("n_layer", n_layer, kMaxLayers);
  check_range("n_head", n_head, kMaxDim);
  check_range("n_embd", n_embd, kMaxDim);
  check_range("n_positions", n_positions, kMaxDim);
  check_range("vocab_size", vocab_size, kMaxVocab);
  if (n_inner != 0) check_range("n_inner", n_inner, 4 * kMaxDim);
  if (n_embd % n_head != 0) {
    throw std::invalid_argument("n_embd (" + std::to_string(n_embd) +
                                ") must be divisible by n_head (" + std::to_string(n_head) + ")");
  }
  if (!valid_activation(activation)) {
    throw std::invalid_argument("activation " + std::to_string(static_cast<int>(activation)) +
                                " is not a known activation");
  }
  // In double: the fields are bounded, but their products may not fit in 64 bits' worth of
  // bytes, and no exact count is needed to see that they are absurd.
  const double C = static_cast<double>(n_embd), F = static_cast<double>(mlp_width());
  const double weights = static_cast<double>(vocab_size) * C * (tie_word_embeddings ? 1 : 2) +
                         static_cast<double>(n_positions) * C +
                         static_cast<double>(n_layer) * (4 * C * C + 2 * C * F + 9 * C + F) +
                         2 * C;
  const double cache = 2.0 * static_cast<double>(n_layer) * C * static_cast<double>(n_positions);
  if (weights > kMaxFloats) {
    throw std::invalid_argument("the weights of n_layer=" + std::to_string(n_layer) +
                                ", n_embd=" + std::to_string(n_embd) +
                                ", vocab_size=" + std::to_string(vocab_size) + " would take " +
                                std::to_string(static_cast<int64_t>(weights / 268435456.0)) +
                                " GiB as float32, beyond the 256 GiB this engine accepts");
  }
  if (cache > kMaxFloats) {
    throw std::invalid_argument("a full-context KV cache for n_layer=" + std::to_string(n_layer) +
                                ", n_embd=" + std::to_string(n_embd) +
                                ", n_positions=" + std::to_string(n_positions) + " would take " +
                                std::to_string(static_cast<int64_t>(cache / 268435456.0)) +
                                " GiB, beyond the 256 GiB this engine accepts");
  }
  if (!(layer_norm_epsilon > 0.0f && layer_norm_epsilon < 1.0f)) {
    throw std::invalid_argument("layer_norm_epsilon must be in (0, 1), got " +
                                std::to_string(layer_norm_epsilon));
  }
}

}  // namespace gpt2cpu
