#pragma once
// Multi-threaded operators built on the ISA kernels. Shapes are in the comments; all
// matrices are row-major with the given row strides. Each spreads its work as `par` says
// (parallel.h) and returns when all of it is done.

#include <cstddef>
#include <cstdint>

#include "gpt2cpu/config.h"
#include "gpt2cpu/kernel_table.h"
#include "gpt2cpu/kv_type.h"
#include "gpt2cpu/packed_matrix.h"
#include "gpt2cpu/parallel.h"

namespace gpt2cpu {

// A team (parallel.h) runs the operators only on fewer rows than this: there, none of
// them allocates (matmul streams the weights; attention's scratch is planned before the
// region). The few-row matmul's limit (ops/matmul.cpp), so that a step of up to 47
// sequences (decode of a batch) keeps its threads between operators too: a region per
// operator costs a wake-up and a sleep each on a busy machine, ~100 a step.
constexpr int64_t kTeamRows = 48;

enum class Accumulate { No, Yes };

// out (t, w.n; ldo) = [out +] inp (t, w.k; ldi) @ W + bias (w.n, may be null).
// Each output is summed the same way whatever t (kernel_table.h: WeightKernels), so a row's
// result never depends on the other rows. In a team, the team's scratch must hold
// product_scratch(t, w.k, w.type, the team's size) bytes.
void matmul(float* out, int64_t ldo, const float* inp, int64_t ldi, int64_t t,
            const PackedMatrix& w, const float* bias, Accumulate acc, const Parallel& par);

// Bytes of scratch a product over t rows of depth k with weights of the type prepares its
// input in (ProductRows) on `threads` threads: an integer type's quantized rows, a float
// type's rows packed once per thread.
size_t product_scratch(int64_t t, int64_t k, WeightType type, int threads);

// out (t, w.n; ldo) = act(inp (t, w.k; ldi) @ W + bias): the MLP's first layer. The
// activation is applied to each output tile as it is finished (a prompt's gelu_new while
// still in registers).
void matmul_activate(float* out, int64_t ldo, const float* inp, int64_t ldi, int64_t t,
                     const PackedMatrix& w, const float* bias, Activation act, const Parallel& par);

// out (t, n) = layernorm(x (t, n)) * weight (n) + bias (n), row by row
void layernorm(float* out, const float* x, const float* weight, const float* bias, int64_t t,
               int64_t n, float eps, const Parallel& par);

// x (n) = activation(x) in place
void activate(float* x, int64_t n, Activation kind, const Parallel& par);
// The same on the calling thread alone, outside any team or region: a matmul's epilogue.
void activate_here(float* x, int64_t n, Activation kind, const KernelTable& kt);

// Causal self-attention of t new tokens at positions [pos0, pos0 + t), all heads.
//   q:   (t, n_head * head_dim; ldq) queries of the new tokens
//   k,v: (n_head, capacity, head_dim) cache holding positions [0, pos0 + t), elements of
//        the shape's kv type (float, or bfloat16's bits)
//   out: (t, n_head * head_dim) the attended values
//   scratch: attention_scratch(s, par.threads()) floats, allocated by the caller so that
//            the operator can run in a team
struct AttentionShape {
  int64_t t, pos0, n_head, head_dim, capacity;
  float scale;
  KvType kv = KvType::F32;
};
void attention(float* out, const float* q, int64_t ldq, const void* k, const void* v,
               const AttentionShape& s, const Parallel& par, float* scratch);
size_t attention_scratch(const AttentionShape& s, int threads);

// One row of an int8 cache (KvType::I8): q (d) = x (d) * (127 / max |x|) rounded to
// nearest even, scale = max |x| / 127 (symmetric); a row holding NaN or infinity gets a
// NaN scale, so that the scores it enters are NaN, as with a float cache. kt's
// quantize_group does the arithmetic (the same bits in every set; a 16-sequence int8
// decode step spent ~0.25 ms in a plain loop).
void quantize_kv_row(const float* x, int64_t d, int8_t* q, float* scale,
                     const KernelTable& kt = kernels());

// attention() for several sequences in one operator: each job is one sequence's new
// tokens against its own cache, and the threads take (query or block, head) items of all
// of them from one counter, so a step of many sequences meets at one barrier, not one per
// sequence. Each job's arithmetic is what attention() alone does for it.
struct AttentionJob {
  float* out;
  const float* q;
  int64_t ldq;
  const void* k;
  const void* v;
  AttentionShape s;
  int64_t items_end = 0;  // set by plan_attention: the end of this job's items
};
// Sets each job's items_end; returns the scratch floats attention_many needs on `threads`
// threads. Called before a team's region: nothing inside it allocates.
size_t plan_attention(AttentionJob* jobs, int64_t count, int threads);
void attention_many(const AttentionJob* jobs, int64_t count, const Parallel& par, float* scratch);

// store_keys_values for several sequences in one operator.
struct KeyValueJob {
  void* k;
  void* v;
  const float* new_k;
  const float* new_v;
  int64_t ld;
  AttentionShape s;
};
void store_keys_values_many(const KeyValueJob* jobs, int64_t count, const Parallel& par);

// The new tokens' keys and values, new_k and new_v (t, n_head * head_dim; ld), copied into
// the cache k, v (n_head, capacity, head_dim) at positions [pos0, pos0 + t), rounded to
// nearest even where the cache is bfloat16.
void store_keys_values(void* k, void* v, const float* new_k, const float* new_v, int64_t ld,
                       const AttentionShape& s, const Parallel& par);

// Memory read bandwidth in bytes/s: the best of `repeats` passes summing a buffer of `bytes`
// split across `threads`. The roofline that decode speed is measured against.
double measure_read_bandwidth(size_t bytes, int threads, int repeats,
                              const KernelTable& kt = kernels());

// Arithmetic peak in flops/s: the best of `repeats` passes in which each of `threads`
// threads runs `rounds` rounds of kt's multiply_add kernel. The ceiling that prompt speed,
// bound by the GEMM micro-kernel's FMAs, is measured against.
double measure_multiply_add_peak(int threads, int64_t rounds, int repeats,
                                 const KernelTable& kt = kernels());

}  // namespace gpt2cpu
