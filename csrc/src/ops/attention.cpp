// Causal self-attention over the KV cache. Work items are independent (query, head) pairs
// for a few new tokens (decode), or (block of kAttendBlock queries, head) pairs for a
// prompt, whose scores and value sums are then matrix products. Which form runs depends on
// a sequence's own t alone, never on the thread count or on the other sequences of a step,
// so results are the same bits on any thread count and in any batch.
#include <cmath>
#include <cstring>

#include "gpt2cpu/kernel_table.h"
#include "gpt2cpu/ops.h"

namespace gpt2cpu {

namespace {

// Keys and values read over the causal triangle.
int64_t attention_work(const AttentionShape& s) {
  return s.n_head * s.head_dim * (s.t * s.pos0 + s.t * (s.t + 1) / 2) * 2;
}

// Whether a second thread is worth its hand-off for this much work. In a decode step's
// team the other thread is spinning at the barrier, so it pays from 64K floats (a 124M step
// from position ~42). Measured on 2 cores, 124M decode steps alternating in one process,
// against the previous 512K threshold: 16.85 vs 17.29 ms a token at position 64, 18.60 vs
// 19.23 ms at 200, 22.70 vs 22.96 ms at 300.
bool worth_a_team(int64_t work) { return work >= (int64_t{1} << 16); }

bool by_block(const AttentionShape& s) { return s.t >= kAttendBlock; }

int64_t items_of(const AttentionShape& s) {
  const int64_t rows = by_block(s) ? (s.t + kAttendBlock - 1) / kAttendBlock : s.t;
  return rows * s.n_head;
}

// Floats of scratch each thread needs: a score row of pos0 + t floats for queries one by
// one, or attend_block's scratch for blocks of them.
int64_t scratch_per_thread(const AttentionShape& s) {
  const int64_t longest = s.pos0 + s.t;
  const int64_t floats = by_block(s) ? attend_block_scratch(longest, s.head_dim) : longest;
  // Whole cache lines, so that one thread's scores never share a line with the next one's
  // (where the scratch starts on one: step.cpp's does when C and the MLP width are
  // multiples of 16, as in every GPT-2).
  return (floats + 15) / 16 * 16;
}

// The same for all the jobs of one call: plan_attention sizes the scratch by it and
// attention_many splits the scratch by it, so the two must agree.
int64_t scratch_per_thread(const AttentionJob* jobs, int64_t count) {
  int64_t most = 0;
  for (int64_t j = 0; j < count; ++j) {
    const int64_t need = scratch_per_thread(jobs[j].s);
    if (need > most) most = need;
  }
  return most;
}

KvLayout layout_of(const AttentionShape& s) { return KvLayout(s.kv, s.head_dim, s.capacity); }

// f(T{}) for the element T of a cache of type kv: float, bfloat16's bits (uint16_t) or
// int8_t.
template <class F>
auto with_element(KvType kv, F f) {
  if (kv == KvType::BF16) return f(uint16_t{});
  if (kv == KvType::I8) return f(int8_t{});
  return f(float{});
}

// The table's kernels for a cache of either element.
void attend_query(const KernelTable& kt, const AttendBlock& b, float* scores,
                  const AttendNext& next) {
  kt.attend(b.out, b.q, b.keys, b.values, b.pos0 + 1, b.d, b.scale, scores, next);
}
void attend_query(const KernelTable& kt, const AttendBlockBf16& b, float* scores,
                  const AttendNext& next) {
  kt.attend_bf16(b.out, b.q, b.keys, b.values, b.pos0 + 1, b.d, b.scale, scores, next);
}
void attend_queries(const KernelTable& kt, const AttendBlock& b, float* scratch) {
  kt.attend_block(b, scratch);
}
void attend_queries(const KernelTable& kt, const AttendBlockBf16& b, float* scratch) {
  kt.attend_block_bf16(b, scratch);
}
void attend_query(const KernelTable& kt, const AttendBlockI8& b, float* scores,
                  const AttendNext& next) {
  kt.attend_i8(b.out, b.q, b.keys, b.values, b.key_scales, b.value_scales, b.pos0 + 1, b.d,
               b.scale, scores, next);
}
void attend_queries(const KernelTable& kt, const AttendBlockI8& b, float* scratch) {
  kt.attend_block_i8(b, scratch);
}

// Item `item` of one job as the run of queries it is, all of one head h = item % n_head: a
// block of up to kAttendBlock, or a decode item's single query i = item / n_head. Later
// tokens see more keys: blocks go out the last first, and queries one by one, to balance
// the triangle. Together its queries read the first pos0 + m keys and values of h's cache,
// whose elements are T's.
template <class T>
AttendBlockOf<T> item_block(const AttentionJob& job, int64_t item) {
  const AttentionShape& s = job.s;
  const int64_t width = s.n_head * s.head_dim;
  const int64_t h = item % s.n_head;
  const KvLayout layout = layout_of(s);
  const char* keys = static_cast<const char*>(job.k) + h * layout.block_bytes;
  const char* values = static_cast<const char*>(job.v) + h * layout.block_bytes;
  int64_t i0 = item / s.n_head, m = 1;
  if (by_block(s)) {
    const int64_t blocks = (s.t + kAttendBlock - 1) / kAttendBlock;
    i0 = (blocks - 1 - i0) * kAttendBlock;
    m = s.t - i0 < kAttendBlock ? s.t - i0 : kAttendBlock;
  }
  AttendBlockOf<T> block;
  block.out = job.out + i0 * width + h * s.head_dim;
  block.ldo = width;
  block.q = job.q + i0 * job.ldq + h * s.head_dim;
  block.ldq = job.ldq;
  block.keys = reinterpret_cast<const T*>(keys);
  block.values = reinterpret_cast<const T*>(values);
  if (info(s.kv).scaled) {
    block.key_scales = reinterpret_cast<const float*>(keys + layout.scales_at);
    block.value_scales = reinterpret_cast<const float*>(values + layout.scales_at);
  }
  block.m = m;
  block.pos0 = s.pos0 + i0;
  block.d = s.head_dim;
  block.scale = s.scale;
  return block;
}

// The keys a decode item reads.
AttendNext decode_keys(const AttentionJob& job, int64_t item) {
  return with_element(job.s.kv, [&](auto element) {
    const auto block = item_block<decltype(element)>(job, item);
    return AttendNext{block.keys, block.pos0 + block.m};
  });
}

// next: the keys the thread's next item reads, which a decode item starts fetching.
void run_item(const KernelTable& kt, const AttentionJob& job, int64_t item, float* scratch,
              const AttendNext& next) {
  with_element(job.s.kv, [&](auto element) {
    const auto block = item_block<decltype(element)>(job, item);
    if (by_block(job.s)) {
      attend_queries(kt, block, scratch);
    } else {
      attend_query(kt, block, scratch, next);
    }
  });
}

// Which job item `item` of all the jobs' belongs to, and its index there; job is count for
// an item past the last. The search goes on from job `from`: a thread takes its items in
// increasing order, so the jobs only move forward.
struct JobItem {
  int64_t job, item;
};
JobItem locate(const AttentionJob* jobs, int64_t count, int64_t from, int64_t item) {
  int64_t j = from;
  while (j < count && item >= jobs[j].items_end) ++j;
  return JobItem{j, item - (j == 0 ? 0 : jobs[j - 1].items_end)};
}

// The most bytes of each head's new rows store_keys_values_many fetches before writing
// them: a decode step's row or few (a prompt's many rows stream in order anyway).
constexpr int64_t kFetchWrittenBytes = 1024;

// One new key or value row (head_dim floats) into the cache at position pos of a head's
// block, as its type holds it.
void store_row(const KernelTable& kt, char* block, int64_t pos, const float* from,
               const AttentionShape& s) {
  const KvLayout layout = layout_of(s);
  char* to = block + pos * layout.row_bytes;
  if (s.kv == KvType::BF16) {
    kt.to_bf16(from, reinterpret_cast<uint16_t*>(to), s.head_dim);
  } else if (s.kv == KvType::I8) {
    quantize_kv_row(from, s.head_dim, reinterpret_cast<int8_t*>(to),
                    reinterpret_cast<float*>(block + layout.scales_at) + pos, kt);
  } else {
    std::memcpy(to, from, static_cast<size_t>(s.head_dim) * sizeof(float));
  }
}

}  // namespace

void quantize_kv_row(const float* x, int64_t d, int8_t* q, float* scale, const KernelTable& kt) {
  int32_t sum = 0;
  kt.quantize_group(x, d, q, scale, &sum);
  if (*scale != 0.0f) return;
  // quantize_group's zero: every |x| under kQuantizeFloor, whose reciprocal overflows
  // float. A cache keeps such rows all the same, scaled in double.
  float most = 0.0f;
  for (int64_t i = 0; i < d; ++i) most = std::fabs(x[i]) > most ? std::fabs(x[i]) : most;
  if (most == 0.0f) return;  // q is 0 already
  const double wide = 127.0 / static_cast<double>(most);
  for (int64_t i = 0; i < d; ++i) {
    const double r = std::nearbyint(static_cast<double>(x[i]) * wide);
    q[i] = static_cast<int8_t>(r < -127.0 ? -127.0 : (r > 127.0 ? 127.0 : r));
  }
  *scale = most / 127.0f;
}

size_t plan_attention(AttentionJob* jobs, int64_t count, int threads) {
  int64_t items = 0;
  for (int64_t j = 0; j < count; ++j) {
    items += items_of(jobs[j].s);
    jobs[j].items_end = items;
  }
  return static_cast<size_t>(scratch_per_thread(jobs, count)) * static_cast<size_t>(threads);
}

void attention_many(const AttentionJob* jobs, int64_t count, const Parallel& par, float* scratch) {
  if (count == 0) return;
  const KernelTable& kt = par.kernels();
  int64_t work = 0;
  for (int64_t j = 0; j < count; ++j) work += attention_work(jobs[j].s);
  const int64_t per_thread = scratch_per_thread(jobs, count);
  par.run(
      [&](const Share& share) {
        float* mine = scratch + share.rank * per_thread;
        // Each thread takes its next item before it runs the current one, so that the
        // current one can fetch what the next reads.
        JobItem at = locate(jobs, count, 0, share.take(1));
        while (at.job < count) {
          const JobItem next = locate(jobs, count, at.job, share.take(1));
          AttendNext reads;
          if (next.job < count && !by_block(jobs[next.job].s)) {
            reads = decode_keys(jobs[next.job], next.item);
          }
          run_item(kt, jobs[at.job], at.item, mine, reads);
          at = next;
        }
      },
      worth_a_team(work));
}

void store_keys_values_many(const KeyValueJob* jobs, int64_t count, const Parallel& par) {
  // A prompt's keys and values are MBs: worth both threads. A decode step's are a few KB,
  // but in a team the other thread would only wait at the barrier: it takes half.
  int64_t floats = 0, heads = 0;
  for (int64_t j = 0; j < count; ++j) {
    floats += jobs[j].s.t * jobs[j].s.n_head * jobs[j].s.head_dim;
    heads += jobs[j].s.n_head;
  }
  const KernelTable& kt = par.kernels();
  // Calls f(job, offset in bytes of head h's block in the job's caches, h) for this
  // thread's (job, head) pairs: split evenly, a job's heads consecutive.
  auto each_head = [&](const Share& share, auto&& f) {
    int64_t j = 0, first = 0;
    for (int64_t item = share.begin(heads); item < share.end(heads); ++item) {
      while (item >= first + jobs[j].s.n_head) first += jobs[j++].s.n_head;
      const int64_t h = item - first;
      f(jobs[j], h * layout_of(jobs[j].s).block_bytes, h);
    }
  };
  par.run(
      [&](const Share& share) {
        // A decode step writes a row or two into each head's cache, lines no cache holds:
        // each store would wait for its line in turn. Fetched all at once first, for
        // writing, they arrive together (a 16-sequence step's writes took 0.39 -> 0.17 ms).
        each_head(share, [](const KeyValueJob& job, int64_t at, int64_t) {
          const KvLayout layout = layout_of(job.s);
          const int64_t row0 = at + job.s.pos0 * layout.row_bytes;
          const int64_t bytes = job.s.t * layout.row_bytes;
          for (int64_t b = 0; b < bytes && b < kFetchWrittenBytes; b += 64) {
            __builtin_prefetch(static_cast<char*>(job.k) + row0 + b, 1, 3);
            __builtin_prefetch(static_cast<char*>(job.v) + row0 + b, 1, 3);
          }
        });
        each_head(share, [&](const KeyValueJob& job, int64_t at, int64_t h) {
          const AttentionShape& s = job.s;
          char* k_block = static_cast<char*>(job.k) + at;
          char* v_block = static_cast<char*>(job.v) + at;
          for (int64_t i = 0; i < s.t; ++i) {
            store_row(kt, k_block, s.pos0 + i, job.new_k + i * job.ld + h * s.head_dim, s);
            store_row(kt, v_block, s.pos0 + i, job.new_v + i * job.ld + h * s.head_dim, s);
          }
        });
      },
      par.in_team() || floats >= (int64_t{1} << 16));
}

void store_keys_values(void* k, void* v, const float* new_k, const float* new_v, int64_t ld,
                       const AttentionShape& s, const Parallel& par) {
  const KeyValueJob job{k, v, new_k, new_v, ld, s};
  store_keys_values_many(&job, 1, par);
}

size_t attention_scratch(const AttentionShape& s, int threads) {
  return static_cast<size_t>(scratch_per_thread(s)) * static_cast<size_t>(threads);
}

void attention(float* out, const float* q, int64_t ldq, const void* k, const void* v,
               const AttentionShape& s, const Parallel& par, float* scratch) {
  AttentionJob job{out, q, ldq, k, v, s};
  plan_attention(&job, 1, par.threads());
  attention_many(&job, 1, par, scratch);
}

}  // namespace gpt2cpu
