#pragma once
// What a model's KV cache stores keys and values as, fixed when the model is created (as
// its weight type is): float32, or bfloat16 for half the memory and half the bytes that a
// decode step's attention reads from it. Only the stored keys and values are rounded;
// queries, scores and sums stay float32 (docs/precisions.md has the accuracy).

#include <cstdint>
#include <stdexcept>
#include <string>

namespace gpt2cpu {

enum class KvType : uint8_t { F32 = 0, BF16, I8 };
constexpr int kKvTypes = 3;

struct KvTypeInfo {
  KvType type;
  const char* name;  // as users spell it: from_pretrained(kv_dtype=...)
  int64_t bytes;     // per stored element
  bool scaled;       // each row (one position's head_dim elements) has a float scale
};

constexpr KvTypeInfo kKvTypeInfo[kKvTypes] = {
    {KvType::F32, "float32", 4, false},
    {KvType::BF16, "bfloat16", 2, false},
    {KvType::I8, "int8", 1, true},
};

inline const KvTypeInfo& info(KvType t) { return kKvTypeInfo[static_cast<int>(t)]; }

// Where things are in one layer's keys (or values): n_head blocks of `capacity` rows of
// head_dim elements each, a scaled type's block followed by its rows' float scales (4-byte
// aligned only if the rows' bytes are a multiple of 4: Model refuses other head sizes).
struct KvLayout {
  int64_t row_bytes;    // one position's elements
  int64_t block_bytes;  // one head's block: rows, then scales
  int64_t scales_at;    // where a block's scales start in it
  KvLayout(KvType t, int64_t head_dim, int64_t capacity)
      : row_bytes(head_dim * info(t).bytes),
        block_bytes(capacity * (row_bytes + (info(t).scaled ? 4 : 0))),
        scales_at(capacity * row_bytes) {}
};

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
