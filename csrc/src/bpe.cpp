#include "gpt2cpu/bpe.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <stdexcept>
#include <utility>

namespace gpt2cpu {

namespace {

constexpr int32_t kNone = -1;  // no neighbour, in the linked list of symbols
constexpr int32_t kGone = -1;  // a symbol absorbed by its left neighbour

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
         static_cast<uint32_t>(right);
}

}  // namespace

BytePairMerger::BytePairMerger(const std::array<int32_t, 256>& byte_ids,
                               const std::vector<Merge>& merges,
                               std::unordered_map<std::string, int32_t> whole_tokens)
    : byte_ids_(byte_ids), whole_tokens_(std::move(whole_tokens)) {
  for (int32_t id : byte_ids_) {
    if (id < 0) throw std::invalid_argument("byte token ids must be non-negative");
  }
  for (const auto& [text, id] : whole_tokens_) {
    if (id < 0) throw std::invalid_argument("whole token ids must be non-negative");
  }
  ranks_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Merge& m = merges[rank];
    if (m.left < 0 || m.right < 0 || m.merged < 0) {
      throw std::invalid_argument("merge " + std::to_string(rank) + " has a negative id");
    }
    ranks_[pair_key(m.left, m.right)] = Rank{static_cast<int32_t>(rank), m.merged};
  }
}

const BytePairMerger::Rank* BytePairMerger::find(int32_t left, int32_t right) const {
  const auto it = ranks_.find(pair_key(left, right));
  return it == ranks_.end() ? nullptr : &it->second;
}

void BytePairMerger::merge(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw std::length_error("a piece of text longer than 2 GiB cannot be merged");
  }
  const auto n = static_cast<int32_t>(piece.size());
  if (n == 0) return;
  if (!whole_tokens_.empty()) {
    const auto it = whole_tokens_.find(std::string(piece));
    if (it != whole_tokens_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (n == 1) {
    out.push_back(byte_ids_[static_cast<unsigned char>(piece[0])]);
    return;
  }

  // Symbols in a linked list, candidate pairs in a min-heap of (rank, left position): long
  // pieces stay O(n log n) where encoder.py's rescan per merge is quadratic. One rank is
  // merged per round, left to right, and the pairs the round creates join the heap only
  // after it, which is encoder.py's "every occurrence of the best pair" whatever the ranks.
  std::vector<int32_t> symbol(n), next(n), prev(n);
  for (int32_t i = 0; i < n; ++i) {
    symbol[i] = byte_ids_[static_cast<unsigned char>(piece[i])];
    next[i] = i + 1 < n ? i + 1 : kNone;
    prev[i] = i - 1;
  }
  using Candidate = std::pair<int32_t, int32_t>;  // (rank, left position)
  const std::greater<Candidate> later;            // makes the std heap a min-heap
  std::vector<Candidate> heap;
  for (int32_t i = 0; i + 1 < n; ++i) {
    if (const Rank* r = find(symbol[i], symbol[i + 1])) heap.emplace_back(r->rank, i);
  }
  std::make_heap(heap.begin(), heap.end(), later);

  std::vector<int32_t> merged_at;
  while (!heap.empty()) {
    const int32_t rank = heap.front().first;
    merged_at.clear();
    while (!heap.empty() && heap.front().first == rank) {
      std::pop_heap(heap.begin(), heap.end(), later);
      const int32_t left = heap.back().second;
      heap.pop_back();
      const int32_t right = next[left];
      if (symbol[left] == kGone || right == kNone) continue;
      const Rank* r = find(symbol[left], symbol[right]);
      if (r == nullptr || r->rank != rank) continue;  // stale: the pair changed since
      symbol[left] = r->merged;
      symbol[right] = kGone;
      next[left] = next[right];
      if (next[right] != kNone) prev[next[right]] = left;
      merged_at.push_back(left);
    }
    for (const int32_t position : merged_at) {
      if (symbol[position] == kGone) continue;
      for (const int32_t left : {prev[position], position}) {
        if (left == kNone || next[left] == kNone) continue;
        if (const Rank* r = find(symbol[left], symbol[next[left]])) {
          heap.emplace_back(r->rank, left);
          std::push_heap(heap.begin(), heap.end(), later);
        }
      }
    }
  }
  for (int32_t i = 0; i != kNone; i = next[i]) out.push_back(symbol[i]);
}

void PieceCache::encode(const BytePairMerger& merger, std::string_view piece,
                        std::vector<int32_t>& out) {
  key_.assign(piece.data(), piece.size());
  const auto it = entries_.find(key_);
  if (it != entries_.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  const size_t start = out.size();
  merger.merge(piece, out);
  if (piece.size() <= max_piece_bytes_) {
    if (entries_.size() >= max_entries_) entries_.clear();
    entries_.emplace(key_, std::vector<int32_t>(out.begin() + start, out.end()));
  }
}

}  // namespace gpt2cpu
