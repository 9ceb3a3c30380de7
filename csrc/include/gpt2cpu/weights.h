#pragma once
// GPT-2's parameters as a struct of pointers into one aligned buffer, named after the
// checkpoint keys (without the "transformer." prefix). Projections (and the LM head) are
// packed for the matmul kernels in the model's weight type; vectors, the position table and
// an untied embedding's rows stay float32 as they come (they are read a row at a time).

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpt2cpu/buffer.h"
#include "gpt2cpu/config.h"
#include "gpt2cpu/packed_matrix.h"

namespace gpt2cpu {

struct KernelTable;

struct LayerWeights {
  const float* ln_1_weight;     // (C)
  const float* ln_1_bias;       // (C)
  PackedMatrix attn_c_attn;     // (C, 3C)
  const float* attn_c_attn_bias;
  PackedMatrix attn_c_proj;     // (C, C)
  const float* attn_c_proj_bias;
  const float* ln_2_weight;
  const float* ln_2_bias;
  PackedMatrix mlp_c_fc;        // (C, F)
  const float* mlp_c_fc_bias;
  PackedMatrix mlp_c_proj;      // (F, C)
  const float* mlp_c_proj_bias;
};

// How a checkpoint tensor is turned into our layout.
enum class TensorLayout { Plain, PackKByN, PackNByK };

// A checkpoint tensor as it lies in a file: `bytes` bytes at `offset` of the open file `fd`,
// elements stored as `dtype` (float32, float16 or bfloat16, little-endian).
enum class SourceType { F32, F16, BF16 };
struct FileTensor {
  std::string name;            // as in specs()
  std::vector<int64_t> shape;  // as the file's header says
  int fd;
  int64_t offset;
  SourceType dtype;
  std::string label;           // names it in errors ("model.safetensors: tensor 'x'")
};

// The file holding a FileTensor ended before it, or could not be read.
class FileReadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;  // as stored in the checkpoint
  TensorLayout layout;
  float* dest;                 // for TensorLayout::Plain
  PackedMatrix* packed;        // for the packed layouts
};

class Weights {
 public:
  Weights(const Config& config, WeightType type);
  Weights(const Weights&) = delete;
  Weights& operator=(const Weights&) = delete;

  // The tensors a checkpoint for this config must provide, with their shapes, in storage
  // order; dest and packed are left null. Allocates nothing, so loaders can check a
  // checkpoint before committing memory to it.
  static std::vector<TensorSpec> specs_for(const Config& config);
  // The same, pointing into this object's buffer.
  const std::vector<TensorSpec>& specs() const { return specs_; }
  // Copy one checkpoint tensor (float32, row-major, shape as in specs()) into place,
  // converting a matrix to the weight type.
  // Throws std::invalid_argument for an unknown name or a wrong shape.
  void load(const std::string& name, const float* data, const std::vector<int64_t>& shape,
            int threads = 1);
  // Reads the tensors from their files and stores them (as load() does), in one parallel
  // region: `threads` threads take bands of rows (or of panels) in turn, each reading its
  // band with pread into a buffer of its own and encoding it straight into place, so the
  // file is read once, by every thread, and never held whole. Every tensor's name and
  // shape are checked first (std::invalid_argument, nothing read); FileReadError when a
  // file ends early or fails to read (which tensors were stored then is unspecified).
  // kt: the kernel set whose encoder stores the matrices.
  void load_files(const std::vector<FileTensor>& tensors, int threads, const KernelTable& kt);
  // Names of required tensors not loaded yet.
  std::vector<std::string> missing() const;
  // What the stored weights occupy, scales included.
  size_t bytes() const { return buffer_.size() * sizeof(float); }
  WeightType type() const { return type_; }

  // out (C) = embedding of token id
  void token_embedding(int64_t id, float* out) const;

  const float* wpe = nullptr;   // (n_positions, C)
  PackedMatrix lm_head;         // (C, V): wte transposed when tied
  const float* ln_f_weight = nullptr;
  const float* ln_f_bias = nullptr;
  std::vector<LayerWeights> layers;

 private:
  // The index in specs_ of tensor `name`; std::invalid_argument for an unknown name or a
  // shape other than the spec's.
  size_t checked_index(const std::string& name, const std::vector<int64_t>& shape) const;

  WeightType type_;
  const float* wte_rows_ = nullptr;  // (V, C); only when the head is not tied
  Buffer buffer_;
  std::vector<TensorSpec> specs_;
  std::vector<bool> loaded_;
};

}  // namespace gpt2cpu
