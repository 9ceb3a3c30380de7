// Sampling's passes over a vocabulary row. The floors are found by radix selection on the
// values' sortable keys instead of a sort: see select_floor.
#include "gpt2cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpt2cpu/kernel_table.h"

namespace gpt2cpu {

namespace {

// Unsigned keys in the order of the floats: flip every bit of a negative value, the sign
// bit of a non-negative one, without a branch, so that loops of it vectorise. Adding +0
// turns -0 into +0, which compares equal to it and must share its key.
inline uint32_t order_key(float v) {
  v += 0.0f;
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return bits ^ ((0u - (bits >> 31)) | 0x80000000u);
}

// v if v >= floor, else 0, by masking its bits: GCC compiles a select (or a multiply by the
// comparison) to a branch, which a flat row's weights mispredict one time in several.
inline float at_or_above(float v, float floor) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  bits &= 0u - static_cast<uint32_t>(v >= floor);
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// kth_largest keeps a heap of the k largest for k up to this; a larger k takes the radix
// selection, as a heap's updates would no longer be rare.
constexpr int64_t kHeapMax = 1024;

// Buckets of one histogram: spans of keys that tell apart the values of a flat row (a
// random model's: every weight within a few percent of the top one) in one pass.
constexpr int kBucketBits = 10;
constexpr uint32_t kBuckets = 1u << kBucketBits;

// Histograms updated four values at a time, one copy each: when values share a few
// buckets, updates to one double in a row would wait on each other.
constexpr int kCopies = 4;

// Whether x (n) holds NaN, which has no place in the order of values.
bool has_nan(const float* x, int64_t n) {
  int nan = 0;
  for (int64_t i = 0; i < n; ++i) nan |= x[i] != x[i];
  return nan != 0;
}

// The largest (kLargest) or smallest value of x (n >= 1, no NaN), in eight lanes the
// compiler vectorises: one pass each is faster than both in one loop, which it does not.
template <bool kLargest>
float extreme(const float* x, int64_t n) {
  const auto better = [](float a, float b) { return kLargest ? a > b : a < b; };
  float lane[8];
  for (int j = 0; j < 8; ++j) lane[j] = x[0];
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) lane[j] = better(x[i + j], lane[j]) ? x[i + j] : lane[j];
  }
  for (; i < n; ++i) lane[0] = better(x[i], lane[0]) ? x[i] : lane[0];
  float best = lane[0];
  for (int j = 1; j < 8; ++j) best = better(lane[j], best) ? lane[j] : best;
  return best;
}

// take(i) for each i in [begin, end) where wanted(x[i]), for a test that few values pass:
// each block of 16 is tested whole first, in a loop that vectorises, and only a block with
// a hit is walked value by value. wanted may depend on what take has done.
template <class Wanted, class Take>
void take_wanted(const float* x, int64_t begin, int64_t end, const Wanted& wanted, Take&& take) {
  constexpr int64_t kBlock = 16;
  for (int64_t i = begin; i < end; i += kBlock) {
    if (i + kBlock <= end) {
      int any = 0;
      for (int64_t j = 0; j < kBlock; ++j) any |= wanted(x[i + j]);
      if (!any) continue;
    }
    const int64_t stop = i + kBlock < end ? i + kBlock : end;
    for (int64_t j = i; j < stop; ++j) {
      if (wanted(x[j])) take(j);
    }
  }
}

// The floor rule of sampling.h. With kWeighted each value holds itself, else it holds 1.
// A bucket holding nothing (with kWeighted: only zeros) never holds the floor.
// Each round narrows the keys in play, [base, base + span], by kBucketBits bits: a
// histogram of what the buckets hold says which one holds the floor, and only its values
// go on. A flat row is done in two rounds, the second over a few dozen values.
// What select_floor found: the floor, how many values equal it, and what the values below
// it hold.
struct Floor {
  float value;
  int64_t ties;
  double below;
};

template <bool kWeighted>
Floor select_floor(const float* values, int64_t n, double budget) {
  // Kept between calls: allocating a row's length anew per token would cost page faults.
  thread_local std::vector<double> hist;
  thread_local std::vector<float> in_play;
  hist.resize(kCopies * kBuckets);
  in_play.resize(static_cast<size_t>(n));
  if (has_nan(values, n)) throw std::invalid_argument("values hold NaN");
  const float lo = extreme<false>(values, n), hi = extreme<true>(values, n);
  if (kWeighted && lo < 0.0f) throw std::invalid_argument("weights must be >= 0");
  uint32_t base = order_key(lo), span = order_key(hi) - base;
  const float* in = values;
  int64_t size = n;
  double dropped = 0.0;  // what the values under the keys in play hold
  while (true) {
    int shift = 0;
    while ((span >> shift) >= kBuckets) ++shift;
    // Clamped, so that no value can index past the histogram, even one that another
    // thread wrote after `extreme` read the row (which saw every other key).
    const auto bucket_of = [base, span, shift](float v) {
      const uint32_t offset = order_key(v) - base;
      return (offset < span ? offset : span) >> shift;
    };
    std::fill(hist.begin(), hist.end(), 0.0);
    double* h = hist.data();
    // Buckets are worked out a chunk at a time in a loop that vectorises, then added to.
    constexpr int64_t kChunk = 256;
    uint32_t index[kChunk];
    for (int64_t i = 0; i < size; i += kChunk) {
      const int64_t m = size - i < kChunk ? size - i : kChunk;
      for (int64_t j = 0; j < m; ++j) index[j] = bucket_of(in[i + j]);
      int64_t j = 0;
      for (; j + kCopies <= m; j += kCopies) {
        for (int c = 0; c < kCopies; ++c) {
          h[c * kBuckets + index[j + c]] += kWeighted ? in[i + j + c] : 1.0;
        }
      }
      for (; j < m; ++j) h[index[j]] += kWeighted ? in[i + j] : 1.0;
    }

    // The floor lies in the first bucket that takes the total past the budget. If none
    // does (the budget is within rounding of the whole), in the last one that holds any
    // value: the largest value is always kept.
    const uint32_t buckets = (span >> shift) + 1;
    uint32_t chosen = buckets;
    double below = dropped;
    for (uint32_t b = 0; b < buckets; ++b) {
      const double held = (h[b] + h[kBuckets + b]) + (h[2 * kBuckets + b] + h[3 * kBuckets + b]);
      if (!(held > 0.0)) continue;
      chosen = b;
      below = dropped;
      dropped += held;
      if (dropped > budget) break;
    }
    if (chosen == buckets) throw std::invalid_argument("no value holds anything to select");
    dropped = below;

    // Only the chosen bucket's values go on, moved to the front of in_play (most rows
    // leave few).
    const uint32_t first = base + (chosen << shift), width = uint32_t{1} << shift;
    const auto in_chosen = [first, width](float v) { return order_key(v) - first < width; };
    float* out = in_play.data();
    int64_t kept = 0;
    take_wanted(in, 0, size, in_chosen, [&](int64_t i) { out[kept++] = in[i]; });
    // None only if another thread wrote to the values meanwhile.
    if (kept == 0) throw std::invalid_argument("the values changed while being selected from");
    // With shift 0 a bucket is one key: every value left is the floor. A lone value is the
    // only one with its key, so the only one equal to it.
    if (shift == 0 || kept == 1) return Floor{out[0], kept, dropped};
    in = out;
    size = kept;
    base += chosen << shift;
    span = (1u << shift) - 1;
  }
}

}  // namespace

void apply_repetition_penalty(float* out, const float* x, int64_t n, const int64_t* ids,
                              int64_t count, float penalty) {
  for (int64_t j = 0; j < count; ++j) {
    if (ids[j] < 0 || ids[j] >= n) {
      throw std::out_of_range("token id " + std::to_string(ids[j]) + " is outside [0, " +
                              std::to_string(n) + ")");
    }
  }
  for (int64_t j = 0; j < count; ++j) {
    const float v = x[ids[j]];
    out[ids[j]] = v < 0.0f ? v * penalty : v / penalty;
  }
}

double softmax_weights(float* w, const float* x, int64_t n) {
  const float top = has_nan(x, n) ? NAN : extreme<true>(x, n);
  if (!(top < INFINITY)) {
    throw std::invalid_argument("logits hold NaN or +inf: no distribution to sample");
  }
  if (top == -INFINITY) {
    std::fill(w, w + n, 0.0f);
    return 0.0;
  }
  return kernels().exp_weights(w, x, n, top);
}

float top_p_floor(const float* w, int64_t n, double budget) {
  return top_p_cut(w, n, budget).floor;
}

TopPCut top_p_cut(const float* w, int64_t n, double budget) {
  if (n < 1) throw std::invalid_argument("no weights to select from");
  const Floor f = select_floor<true>(w, n, budget);
  // The tied tokens go one by one while the running total stays <= budget; at least one
  // stays, as the floor is where the total passes the budget (or the largest weight).
  const double room = (budget - f.below) / static_cast<double>(f.value);
  int64_t drop = room > 0.0 ? static_cast<int64_t>(std::min(room, static_cast<double>(n))) : 0;
  if (drop > f.ties - 1) drop = f.ties - 1;
  return TopPCut{f.value, drop};
}

float kth_largest(const float* x, int64_t n, int64_t k) {
  if (k < 1 || k > n) throw std::invalid_argument("k must be in [1, n]");
  if (k > kHeapMax) return select_floor<false>(x, n, static_cast<double>(n - k)).value;
  // A min-heap of the k largest so far. Past the first few hundred values a new one rarely
  // beats the smallest of them. What goes in is a value read once and tested: another
  // thread could change it between two reads.
  if (has_nan(x, n)) throw std::invalid_argument("values hold NaN");
  std::vector<float> heap(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    const float v = x[i];
    heap[i] = v == v ? v : -INFINITY;  // keeps the heap's order total, whatever happens
  }
  const std::greater<float> min_heap;
  std::make_heap(heap.begin(), heap.end(), min_heap);
  float low = heap.front();
  const auto beats_low = [&low](float v) { return v > low; };  // NaN never does
  take_wanted(x, k, n, beats_low, [&](int64_t i) {
    const float v = x[i];
    if (!(v > low)) return;
    std::pop_heap(heap.begin(), heap.end(), min_heap);
    heap.back() = v;
    std::push_heap(heap.begin(), heap.end(), min_heap);
    low = heap.front();
  });
  return low;
}

int64_t draw(const float* w, int64_t n, float floor, double u) {
  if (!(floor >= 0.0f)) throw std::invalid_argument("floor must be >= 0");
  // Sums of blocks of kBlock weights, in eight lanes the compiler vectorises. The search
  // inside the chosen block adds its weights in index order, which can round apart from
  // the block's sum: see the end.
  constexpr int64_t kBlock = 256;
  const auto weight = [w, floor](int64_t i) -> double { return at_or_above(w[i], floor); };
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> sums(static_cast<size_t>(blocks), 0.0);
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t start = b * kBlock, end = n < start + kBlock ? n : start + kBlock;
    double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = start;
    for (; i + 8 <= end; i += 8) {
      for (int j = 0; j < 8; ++j) lanes[j] += weight(i + j);
    }
    for (; i < end; ++i) lanes[0] += weight(i);
    sums[b] = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) +
              ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
  }
  double total = 0.0;
  for (const double s : sums) total += s;
  if (!std::isfinite(total)) throw std::invalid_argument("weights must be finite");
  if (!(total > 0.0)) throw std::invalid_argument("no token left to draw: every weight is 0");

  const double target = u * total;
  double below = 0.0;
  int64_t b = 0;
  for (; b < blocks && below + sums[b] <= target; ++b) below += sums[b];
  if (b < blocks) {
    const int64_t end = n < (b + 1) * kBlock ? n : (b + 1) * kBlock;
    for (int64_t i = b * kBlock; i < end; ++i) {
      below += weight(i);  // a token of weight 0 leaves it <= target
      if (below > target) return i;
    }
  }
  // Rounding put the target at the end of block b (or of the row): the last token there
  // with a weight, which exists, as the block's (or the row's) sum is positive.
  for (int64_t i = b < blocks ? (b + 1) * kBlock - 1 : n - 1; i >= 0; --i) {
    if (i < n && weight(i) > 0.0) return i;
  }
  return 0;  // not reached: total > 0
}

}  // namespace gpt2cpu
