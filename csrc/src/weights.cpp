#include "gpt2cpu/weights.h"

#include <cstring>
#include <stdexcept>

namespace gpt2cpu {

namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

size_t round_up_64(size_t bytes) { return (bytes + 63) / 64 * 64; }

// Bytes a tensor takes in our layout (weights, then scales), each part rounded up so that
// every part starts 64-byte aligned.
struct StoredSize {
  size_t data = 0, scales = 0;
};

StoredSize stored_size(const TensorSpec& spec, WeightType type) {
  if (spec.layout == TensorLayout::Plain) {
    size_t n = 1;
    for (int64_t d : spec.shape) n *= static_cast<size_t>(d);
    return {round_up_64(n * sizeof(float)), 0};
  }
  const bool k_by_n = spec.layout == TensorLayout::PackKByN;
  const int64_t k = spec.shape[k_by_n ? 0 : 1], n = spec.shape[k_by_n ? 1 : 0];
  return {round_up_64(static_cast<size_t>(PackedMatrix::data_bytes(type, k, n))),
          round_up_64(static_cast<size_t>(PackedMatrix::scale_bytes(type, k, n)))};
}

}  // namespace

std::vector<TensorSpec> Weights::specs_for(const Config& c) {
  c.validate();
  const int64_t C = c.n_embd, F = c.mlp_width(), V = c.vocab_size, P = c.n_positions;
  std::vector<TensorSpec> specs;
  auto add = [&](std::string name, std::vector<int64_t> shape, TensorLayout layout) {
    specs.push_back({std::move(name), std::move(shape), layout, nullptr, nullptr});
  };
  // A tied head stores wte once, packed for the head; token lookups read its columns.
  if (c.tie_word_embeddings) {
    add("wte.weight", {V, C}, TensorLayout::PackNByK);
  } else {
    add("wte.weight", {V, C}, TensorLayout::Plain);
    add("lm_head.weight", {V, C}, TensorLayout::PackNByK);
  }
  add("wpe.weight", {P, C}, TensorLayout::Plain);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string h = "h." + std::to_string(l) + ".";
    add(h + "ln_1.weight", {C}, TensorLayout::Plain);
    add(h + "ln_1.bias", {C}, TensorLayout::Plain);
    add(h + "attn.c_attn.weight", {C, 3 * C}, TensorLayout::PackKByN);
    add(h + "attn.c_attn.bias", {3 * C}, TensorLayout::Plain);
    add(h + "attn.c_proj.weight", {C, C}, TensorLayout::PackKByN);
    add(h + "attn.c_proj.bias", {C}, TensorLayout::Plain);
    add(h + "ln_2.weight", {C}, TensorLayout::Plain);
    add(h + "ln_2.bias", {C}, TensorLayout::Plain);
    add(h + "mlp.c_fc.weight", {C, F}, TensorLayout::PackKByN);
    add(h + "mlp.c_fc.bias", {F}, TensorLayout::Plain);
    add(h + "mlp.c_proj.weight", {F, C}, TensorLayout::PackKByN);
    add(h + "mlp.c_proj.bias", {C}, TensorLayout::Plain);
  }
  add("ln_f.weight", {C}, TensorLayout::Plain);
  add("ln_f.bias", {C}, TensorLayout::Plain);
  return specs;
}

Weights::Weights(const Config& c, WeightType type) : type_(type), specs_(specs_for(c)) {
  size_t total = 0;
  for (const auto& spec : specs_) {
    const StoredSize size = stored_size(spec, type);
    total += size.data + size.scales;
  }
  buffer_.resize(total / sizeof(float), Buffer::Pages::Huge);
  // Where each tensor's bytes (and a packed one's scales) start.
  std::vector<uint8_t*> data_at, scales_at;
  uint8_t* at = reinterpret_cast<uint8_t*>(buffer_.data());
  for (auto& spec : specs_) {
    const StoredSize size = stored_size(spec, type);
    data_at.push_back(at);
    scales_at.push_back(size.scales != 0 ? at + size.data : nullptr);
    if (spec.layout == TensorLayout::Plain) spec.dest = reinterpret_cast<float*>(at);
    at += size.data + size.scales;
  }
  loaded_.assign(specs_.size(), false);

  auto find = [this](const std::string& name) -> size_t {
    for (size_t i = 0; i < specs_.size(); ++i) {
      if (specs_[i].name == name) return i;
    }
    throw std::logic_error("no tensor spec named " + name);
  };
  auto plain = [&](const std::string& name) -> const float* { return specs_[find(name)].dest; };
  auto packed = [&](const std::string& name, PackedMatrix& m) {
    const size_t i = find(name);
    TensorSpec& spec = specs_[i];
    const bool k_by_n = spec.layout == TensorLayout::PackKByN;
    m.type = type;
    m.data = data_at[i];
    m.scales = reinterpret_cast<float*>(scales_at[i]);
    m.k = spec.shape[k_by_n ? 0 : 1];
    m.n = spec.shape[k_by_n ? 1 : 0];
    spec.packed = &m;
  };

  if (c.tie_word_embeddings) {
    packed("wte.weight", lm_head);
  } else {
    wte_rows_ = plain("wte.weight");
    packed("lm_head.weight", lm_head);
  }
  wpe = plain("wpe.weight");
  layers.resize(static_cast<size_t>(c.n_layer));
  for (size_t l = 0; l < layers.size(); ++l) {
    LayerWeights& L = layers[l];
    const std::string h = "h." + std::to_string(l) + ".";
    L.ln_1_weight = plain(h + "ln_1.weight");
    L.ln_1_bias = plain(h + "ln_1.bias");
    packed(h + "attn.c_attn.weight", L.attn_c_attn);
    L.attn_c_attn_bias = plain(h + "attn.c_attn.bias");
    packed(h + "attn.c_proj.weight", L.attn_c_proj);
    L.attn_c_proj_bias = plain(h + "attn.c_proj.bias");
    L.ln_2_weight = plain(h + "ln_2.weight");
    L.ln_2_bias = plain(h + "ln_2.bias");
    packed(h + "mlp.c_fc.weight", L.mlp_c_fc);
    L.mlp_c_fc_bias = plain(h + "mlp.c_fc.bias");
    packed(h + "mlp.c_proj.weight", L.mlp_c_proj);
    L.mlp_c_proj_bias = plain(h + "mlp.c_proj.bias");
  }
  ln_f_weight = plain("ln_f.weight");
  ln_f_bias = plain("ln_f.bias");
}

size_t Weights::checked_index(const std::string& name, const std::vector<int64_t>& shape) const {
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (specs_[i].name != name) continue;
    if (shape != specs_[i].shape) {
      throw std::invalid_argument("tensor '" + name + "' has shape " + shape_str(shape) +
                                  ", expected " + shape_str(specs_[i].shape));
    }
    return i;
  }
  throw std::invalid_argument("unknown tensor '" + name + "'");
}

void Weights::load(const std::string& name, const float* data, const std::vector<int64_t>& shape,
                   int threads) {
  const size_t i = checked_index(name, shape);
  TensorSpec& spec = specs_[i];
  switch (spec.layout) {
    case TensorLayout::Plain: {
      size_t n = 1;
      for (int64_t d : shape) n *= static_cast<size_t>(d);
      std::memcpy(spec.dest, data, n * sizeof(float));
      break;
    }
    case TensorLayout::PackKByN:
      spec.packed->pack_from_k_by_n(data, threads);
      break;
    case TensorLayout::PackNByK:
      spec.packed->pack_from_n_by_k(data, threads);
      break;
  }
  loaded_[i] = true;
}

std::vector<std::string> Weights::missing() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (!loaded_[i]) names.push_back(specs_[i].name);
  }
  return names;
}

void Weights::token_embedding(int64_t id, float* out) const {
  if (wte_rows_ != nullptr) {
    std::memcpy(out, wte_rows_ + id * lm_head.k, lm_head.k * sizeof(float));
  } else {
    lm_head.column(id, out);
  }
}

}  // namespace gpt2cpu
