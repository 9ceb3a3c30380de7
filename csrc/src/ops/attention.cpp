// Causal self-attention over the KV cache. Work items are independent (query, head) pairs
// for a few new tokens (decode), or (block of kAttendBlock queries, head) pairs for a
// prompt, whose scores and value sums are then matrix products. Which form runs depends on
// t alone, never on the thread count, so results are the same bits on any thread count.
#include <omp.h>

#include <cstring>

#include "gpt2cpu/buffer.h"
#include "gpt2cpu/kernels.h"
#include "gpt2cpu/ops.h"

namespace gpt2cpu {

namespace {

// Threads worth waking for this much work: keys and values read over the causal
// triangle. Below 512K floats (a 124M decode step before position ~340) one thread is
// faster. Measured on 2 cores, one layer of a 124M decode step, one thread vs two (the
// second woken from a passive wait): at position 200, 35 vs 55 us with the cache in L3
// and 120 vs 159 us with it evicted; at position 400, 146 vs 114 us and 219 vs 188 us.
int team_size(const AttentionShape& s, int64_t items, int threads) {
  const int64_t work = s.n_head * s.head_dim * (s.t * s.pos0 + s.t * (s.t + 1) / 2) * 2;
  const int64_t wanted = work < (int64_t{1} << 19) ? 1 : threads;
  return static_cast<int>(items < wanted ? items : wanted);
}

void attention_by_query(float* out, const float* q, int64_t ldq, const float* k, const float* v,
                        const AttentionShape& s, int threads) {
  const KernelTable& kt = kernels();
  const int64_t width = s.n_head * s.head_dim;
  const int64_t items = s.t * s.n_head;
  const int64_t longest = s.pos0 + s.t;
  const int team = team_size(s, items, threads);
  // One score row per thread, allocated here: nothing may throw inside the parallel region.
  Buffer scores(static_cast<size_t>(team) * longest);
#pragma omp parallel num_threads(team)
  {
    float* my_scores = scores.data() + omp_get_thread_num() * longest;
    // Later tokens see more keys: hand items out dynamically to balance the causal triangle.
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t i = item / s.n_head;
      const int64_t h = item % s.n_head;
      const int64_t head_offset = h * s.capacity * s.head_dim;
      kt.attend(out + i * width + h * s.head_dim, q + i * ldq + h * s.head_dim, k + head_offset,
                v + head_offset, s.pos0 + i + 1, s.head_dim, s.scale, my_scores);
    }
  }
}

void attention_by_block(float* out, const float* q, int64_t ldq, const float* k, const float* v,
                        const AttentionShape& s, int threads) {
  const KernelTable& kt = kernels();
  const int64_t width = s.n_head * s.head_dim;
  const int64_t blocks = (s.t + kAttendBlock - 1) / kAttendBlock;
  const int64_t items = blocks * s.n_head;
  const int team = team_size(s, items, threads);
  const int64_t scratch_floats = attend_block_scratch(s.pos0 + s.t, s.head_dim);
  Buffer scratch(static_cast<size_t>(team) * scratch_floats);
#pragma omp parallel num_threads(team)
  {
    float* my_scratch = scratch.data() + omp_get_thread_num() * scratch_floats;
    // The last blocks see the most keys: hand them out first, dynamically.
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
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
  }
}

}  // namespace

void store_keys_values(float* k, float* v, const float* new_k, const float* new_v, int64_t ld,
                       const AttentionShape& s, int threads) {
  // A prompt's keys and values are MBs: worth both threads. A decode step's are a few KB.
  const bool parallel = s.t * s.n_head * s.head_dim >= (int64_t{1} << 16);
  const size_t row_bytes = static_cast<size_t>(s.head_dim) * sizeof(float);
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
  for (int64_t h = 0; h < s.n_head; ++h) {
    float* k_head = k + (h * s.capacity + s.pos0) * s.head_dim;
    float* v_head = v + (h * s.capacity + s.pos0) * s.head_dim;
    for (int64_t i = 0; i < s.t; ++i) {
      std::memcpy(k_head + i * s.head_dim, new_k + i * ld + h * s.head_dim, row_bytes);
      std::memcpy(v_head + i * s.head_dim, new_v + i * ld + h * s.head_dim, row_bytes);
    }
  }
}

void attention(float* out, const float* q, int64_t ldq, const float* k, const float* v,
               const AttentionShape& s, int threads) {
  if (s.t >= kAttendBlock) {
    attention_by_block(out, q, ldq, k, v, s, threads);
  } else {
    attention_by_query(out, q, ldq, k, v, s, threads);
  }
}

}  // namespace gpt2cpu
