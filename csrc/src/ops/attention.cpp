#include <omp.h>

#include "gpt2cpu/buffer.h"
#include "gpt2cpu/kernels.h"
#include "gpt2cpu/ops.h"

namespace gpt2cpu {

void attention(float* out, const float* q, int64_t ldq, const float* k, const float* v,
               const AttentionShape& s, int threads) {
  const KernelTable& kt = kernels();
  const int64_t width = s.n_head * s.head_dim;
  const int64_t items = s.t * s.n_head;
  const int64_t longest = s.pos0 + s.t;
  // Keys and values read in all, over the causal triangle: below ~64K floats a thread team
  // costs more to wake than the work takes.
  const int64_t work = s.n_head * s.head_dim * (s.t * s.pos0 + s.t * (s.t + 1) / 2) * 2;
  const int64_t wanted = work < (int64_t{1} << 16) ? 1 : threads;
  const int team = static_cast<int>(items < wanted ? items : wanted);
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

}  // namespace gpt2cpu
