#pragma once
// A loaded GPT-2 model: configuration and weights, read-only once loaded, so any number of
// sequences on any threads may run it at once.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gpt2cpu/buffer_pool.h"
#include "gpt2cpu/config.h"
#include "gpt2cpu/kernel_table.h"
#include "gpt2cpu/kv_type.h"
#include "gpt2cpu/weights.h"

namespace gpt2cpu {

class Model {
 public:
  // type: what the matrices are stored as (converted at load). kt: the kernel set every
  // sequence of the model runs, and kv what every sequence's KV cache holds, both fixed
  // for the model's life.
  Model(const Config& config, int threads, WeightType type = WeightType::F32,
        const KernelTable& kt = gpt2cpu::kernels(), KvType kv = KvType::F32);

  const Config& config() const { return config_; }
  Weights& weights() { return weights_; }
  const Weights& weights() const { return weights_; }

  // Copies one checkpoint tensor into place (see Weights::load). Throws invalid_argument
  // once the model is ready: sequences read the weights without locks from then on.
  void load_tensor(const std::string& name, const float* data, const std::vector<int64_t>& shape);
  // Weights::load_files on the model's threads, under the same rules as load_tensor.
  void load_files(const std::vector<FileTensor>& tensors);
  // Throws std::invalid_argument naming the missing tensors; after it, the model is ready.
  void finalize();
  bool ready() const { return ready_.load(std::memory_order_acquire); }

  const KernelTable& kernels() const { return *kernels_; }
  KvType kv_type() const { return kv_type_; }
  // Bytes a sequence's cache takes per position: keys and values of every layer.
  int64_t kv_bytes_per_position() const {
    const KvLayout one_position(kv_type_, config_.head_dim(), 1);
    return config_.n_layer * 2 * config_.n_head * one_position.block_bytes;
  }

  int threads() const { return threads_.load(std::memory_order_relaxed); }
  void set_threads(int threads);

  // Where sequences take their KV caches and activations from and give them back to. Not
  // part of the model's value, so usable through a const model.
  BufferPool& cache_pool() const { return cache_pool_; }
  BufferPool& activation_pool() const { return activation_pool_; }

 private:
  Config config_;
  Weights weights_;
  const KernelTable* kernels_;
  KvType kv_type_;
  std::atomic<int> threads_;
  std::atomic<bool> ready_{false};
  std::mutex loading_;  // loads and finalize, which callers may race from several threads
  // Idle caches up to the weights' size (buffer_pool.h).
  mutable BufferPool cache_pool_{SIZE_MAX, weights_.bytes() / sizeof(float)};
  // A step's activations are ~10 floats a row per embedding width: a 1024-token step of
  // a 124M model is ~35 MB, but one step of 64 prompts of 1000 tokens ~1.8 GB, which an
  // idle model should not keep. Buffers over 64 MB go back to the system, and idle ones
  // stay within 64 MB together.
  mutable BufferPool activation_pool_{size_t{16} << 20, size_t{16} << 20};
};

}  // namespace gpt2cpu
