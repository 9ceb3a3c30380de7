#pragma once
// Byte-pair merging as GPT-2's encoder.py does it, for the tokenizer's hot loop. A piece of
// pre-tokenized text starts as one symbol per byte; the adjacent pair with the lowest merge
// rank is joined at every place it occurs, left to right, and this repeats until no adjacent
// pair has a rank. The Python package keeps a pure-Python twin (python/gpt2cpu/bpe.py) that
// must give the same ids; the tests hold the two against each other.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace gpt2cpu {

struct Merge {
  int32_t left;
  int32_t right;
  int32_t merged;
};

class BytePairMerger {
 public:
  // byte_ids[b] is the token of the single byte b. merges are listed lowest rank first; a
  // pair listed twice keeps its later rank, as in encoder.py. A piece whose bytes are a key
  // of whole_tokens is that token without merging (Hugging Face's ignore_merges). Ids must
  // be non-negative; throws std::invalid_argument otherwise.
  BytePairMerger(const std::array<int32_t, 256>& byte_ids, const std::vector<Merge>& merges,
                 std::unordered_map<std::string, int32_t> whole_tokens = {});

  // Appends the ids of one piece to out. Const and thread-safe.
  void merge(std::string_view piece, std::vector<int32_t>& out) const;

 private:
  struct Rank {
    int32_t rank;
    int32_t merged;
  };
  const Rank* find(int32_t left, int32_t right) const;

  std::array<int32_t, 256> byte_ids_;
  std::unordered_map<uint64_t, Rank> ranks_;
  std::unordered_map<std::string, int32_t> whole_tokens_;
};

// Piece -> ids for pieces seen before. Bounded: emptied when it reaches max_entries, and
// pieces longer than max_piece_bytes (rarely repeated) are not kept. Not thread-safe.
class PieceCache {
 public:
  PieceCache(size_t max_entries, size_t max_piece_bytes)
      : max_entries_(max_entries), max_piece_bytes_(max_piece_bytes) {}

  // Appends the ids of piece to out, merging (and remembering) it on a miss.
  void encode(const BytePairMerger& merger, std::string_view piece, std::vector<int32_t>& out);
  void clear() { entries_.clear(); }
  size_t size() const { return entries_.size(); }

 private:
  size_t max_entries_;
  size_t max_piece_bytes_;
  std::unordered_map<std::string, std::vector<int32_t>> entries_;
  std::string key_;  // reused lookup key, so a hit allocates nothing
};

}  // namespace gpt2cpu
