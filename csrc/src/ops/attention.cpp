// Causal self-attention over the KV cache. Work items are independent (query, head) pairs
// for a few new tokens (decode), or (block of kAttendBlock queries, head) pairs for a
// prompt, whose scores and value sums are then matrix products. Which form runs depends on
// t alone, never on the thread count, so results are the same bits on any thread count.
#include <cstring>

#include "gpt2cpu/kernel_table.h"
#include "gpt2cpu/ops.h"

namespace gpt2cpu {

namespace {

// Whether a second thread is worth its hand-off for this much work: keys and values read
// over the causal triangle. In a decode step's team the other thread is spinning at the
// barrier, so it pays from 64K floats (a 124M step from position ~42). Measured on 2 cores,
// 124M decode steps alternating in one process, against the previous 512K threshold: 16.85
// vs 17.29 ms a token at position 64, 18.60 vs 19.23 ms at 200, 22.70 vs 22.96 ms at 300.
bool worth_a_team(const AttentionShape& s) {
  const int64_t work = s.n_head * s.head_dim * (s.t * s.pos0 + s.t * (s.t + 1) / 2) * 2;
  return work >= (int64_t{1} << 16);
}

// Floats of scratch each thread needs: a score row of pos0 + t floats for queries one by
// one, or attend_block's scratch for blocks of them (the same choice as attention()'s).
int64_t scratch_per_thread(const AttentionShape& s) {
  const int64_t longest = s.pos0 + s.t;
  return s.t >= kAttendBlock ? attend_block_scratch(longest, s.head_dim) : longest;
}

void attention_by_query(float* out, const float* q, int64_t ldq, const float* k, const float* v,
                        const AttentionShape& s, const Parallel& par, float* scratch) {
  const KernelTable& kt = par.kernels();
  const int64_t width = s.n_head * s.head_dim;
  const int64_t items = s.t * s.n_head;
  par.run(
      [&](const Share& share) {
        float* my_scores = scratch + share.rank * scratch_per_thread(s);
        // Later tokens see more keys: hand items out one by one to balance the triangle.
        for (int64_t item = share.take(1); item < items; item = share.take(1)) {
          const int64_t i = item / s.n_head;
          const int64_t h = item % s.n_head;
          const int64_t head_offset = h * s.capacity * s.head_dim;
          kt.attend(out + i * width + h * s.head_dim, q + i * ldq + h * s.head_dim,
                    k + head_offset, v + head_offset, s.pos0 + i + 1, s.head_dim, s.scale,
                    my_scores);
        }
      },
      worth_a_team(s));
}

void attention_by_block(float* out, const float* q, int64_t ldq, const float* k, const float* v,
                        const AttentionShape& s, const Parallel& par, float* scratch) {
  const KernelTable& kt = par.kernels();
  const int64_t width = s.n_head * s.head_dim;
  const int64_t blocks = (s.t + kAttendBlock - 1) / kAttendBlock;
  const int64_t items = blocks * s.n_head;
  par.run(
      [&](const Share& share) {
        float* my_scratch = scratch + share.rank * scratch_per_thread(s);
        // The last blocks see the most keys: hand them out first, one by one.
        for (int64_t item = share.take(1); item < items; item = share.take(1)) {
          const int64_t i0 = (blocks - 1 - item / s.n_head) * kAttendBlock;
          const int64_t h = item % s.n_head;
          const int64_t head_offset = h * s.capacity * s.head_dim;
          AttendBlock job;
          job.out = out + i0 * width + h * s.head_dim;
          job.ldo = width;
          job.q = q + i0 * ldq + h * s.head_dim;
          job.ldq = ldq;
          job.keys = k + head_offset;
          job.values = v + head_offset;
          job.m = s.t - i0 < kAttendBlock ? s.t - i0 : kAttendBlock;
          job.pos0 = s.pos0 + i0;
          job.d = s.head_dim;
          job.scale = s.scale;
          kt.attend_block(job, my_scratch);
        }
      },
      worth_a_team(s));
}

}  // namespace

void store_keys_values(float* k, float* v, const float* new_k, const float* new_v, int64_t ld,
                       const AttentionShape& s, const Parallel& par) {
  // A prompt's keys and values are MBs: worth both threads. A decode step's are a few KB.
  const bool wide = s.t * s.n_head * s.head_dim >= (int64_t{1} << 16);
  const size_t row_bytes = static_cast<size_t>(s.head_dim) * sizeof(float);
  par.run(
      [&](const Share& share) {
        for (int64_t h = share.begin(s.n_head); h < share.end(s.n_head); ++h) {
          float* k_head = k + (h * s.capacity + s.pos0) * s.head_dim;
          float* v_head = v + (h * s.capacity + s.pos0) * s.head_dim;
          for (int64_t i = 0; i < s.t; ++i) {
            std::memcpy(k_head + i * s.head_dim, new_k + i * ld + h * s.head_dim, row_bytes);
            std::memcpy(v_head + i * s.head_dim, new_v + i * ld + h * s.head_dim, row_bytes);
          }
        }
      },
      wide);
}

size_t attention_scratch(const AttentionShape& s, int threads) {
  return static_cast<size_t>(scratch_per_thread(s)) * static_cast<size_t>(threads);
}

void attention(float* out, const float* q, int64_t ldq, const float* k, const float* v,
               const AttentionShape& s, const Parallel& par, float* scratch) {
  if (s.t >= kAttendBlock) {
    attention_by_block(out, q, ldq, k, v, s, par, scratch);
  } else {
    attention_by_query(out, q, ldq, k, v, s, par, scratch);
  }
}

}  // namespace gpt2cpu
