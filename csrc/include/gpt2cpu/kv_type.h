#pragma once
// What a model's KV cache stores keys and values as, fixed when the model is created (as
// its weight type is): float32, or bfloat16 for half the memory and half the bytes that a
// decode step's attention reads from it. Only the stored keys and values are rounded;
// queries, scores and sums stay float32 (docs/precisions.md has the accuracy).

#include <cstdint>
#include <stdexcept>
#include <string>

namespace gpt2cpu {

enum class KvType : uint8_t { F32 = 0, BF16 };
constexpr int kKvTypes = 2;

struct KvTypeInfo {
  KvType type;
  const char* name;  // as users spell it: from_pretrained(kv_dtype=...)
  int64_t bytes;     // per stored element
};

constexpr KvTypeInfo kKvTypeInfo[kKvTypes] = {
    {KvType::F32, "float32", 4},
    {KvType::BF16, "bfloat16", 2},
};

inline const KvTypeInfo& info(KvType t) { return kKvTypeInfo[static_cast<int>(t)]; }

// The type named `name`; throws std::invalid_argument listing the valid names.
inline KvType kv_type_named(const std::string& name) {
  std::string valid;
  for (const auto& row : kKvTypeInfo) {
    if (name == row.name) return row.type;
    valid += std::string(valid.empty() ? "" : ", ") + "'" + row.name + "'";
  }
  throw std::invalid_argument("unknown kv_dtype '" + name + "'; valid kv_dtypes: " + valid);
}

}  // namespace gpt2cpu
