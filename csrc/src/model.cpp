#include "gpt2cpu/model.h"

#include <stdexcept>

#include "gpt2cpu/kernel_table.h"
#include "gpt2cpu/parallel.h"

namespace gpt2cpu {

namespace {
// A cache's float scales follow each head's block of rows (kv_type.h: KvLayout): aligned
// when the rows' bytes are a multiple of 4, as every GPT-2's (head_dim 64) are.
KvType checked_kv(KvType kv, const Config& c) {
  if (info(kv).scaled && KvLayout(kv, c.head_dim(), 1).row_bytes % 4 != 0) {
    throw std::invalid_argument(std::string("kv_dtype '") + info(kv).name +
                                "' needs a head size (n_embd / n_head) that is a multiple of 4; "
                                "this model's is " + std::to_string(c.head_dim()));
  }
  return kv;
}

int checked_threads(int threads) {
  if (threads < 1 || threads > 4096) {
    throw std::invalid_argument("threads must be in [1, 4096], got " + std::to_string(threads));
  }
  return threads;
}
}  // namespace

Model::Model(const Config& config, int threads, WeightType type, const KernelTable& kt,
             KvType kv)
    : config_(config), weights_(config, type), kernels_(&kt), kv_type_(checked_kv(kv, config)),
      threads_(checked_threads(threads)) {}

void Model::load_tensor(const std::string& name, const float* data,
                        const std::vector<int64_t>& shape) {
  std::lock_guard<std::mutex> lock(loading_);
  if (ready()) {
    throw std::invalid_argument("the model is already loaded; tensors cannot be replaced");
  }
  weights_.load(name, data, shape, usable_threads(threads()));
}

void Model::load_files(const std::vector<FileTensor>& tensors) {
  std::lock_guard<std::mutex> lock(loading_);
  if (ready()) {
    throw std::invalid_argument("the model is already loaded; tensors cannot be replaced");
  }
  weights_.load_files(tensors, usable_threads(threads()), *kernels_);
}

void Model::finalize() {
  std::lock_guard<std::mutex> lock(loading_);
  const auto missing = weights_.missing();
  if (!missing.empty()) {
    std::string names;
    for (size_t i = 0; i < missing.size() && i < 5; ++i) names += (i ? ", " : "") + missing[i];
    if (missing.size() > 5) names += ", ... (" + std::to_string(missing.size()) + " in all)";
    throw std::invalid_argument("missing tensors: " + names);
  }
  ready_.store(true, std::memory_order_release);
}

void Model::set_threads(int threads) { threads_.store(checked_threads(threads)); }

}  // namespace gpt2cpu
