#pragma once
// A loaded GPT-2 model: configuration and weights, read-only once loaded, so any number of
// sequences on any threads may run it at once.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gpt2cpu/config.h"
#include "gpt2cpu/weights.h"

namespace gpt2cpu {

class Model {
 public:
  Model(const Config& config, int threads);

  const Config& config() const { return config_; }
  Weights& weights() { return weights_; }
  const Weights& weights() const { return weights_; }

  // Throws std::invalid_argument naming the missing tensors; after it, the model is ready.
  void finalize();
  bool ready() const { return ready_; }

  int threads() const { return threads_.load(std::memory_order_relaxed); }
  void set_threads(int threads);

 private:
  Config config_;
  Weights weights_;
  std::atomic<int> threads_;
  bool ready_ = false;
};

}  // namespace gpt2cpu
