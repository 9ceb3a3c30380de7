#pragma once
// The table of kernels one instruction set provides, and the choice of table at run time.
// Each kernel is a plain function on raw pointers, single-threaded; threading is done by the
// callers in ops.h. Every set's table has the same kernels and the same semantics; the sets
// (src/isa/) differ in speed, rounding and register blocking (gemm_rows).

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gpt2cpu/packed_matrix.h"
#include "gpt2cpu/weight_type.h"

namespace gpt2cpu {

// The most rows of A one GEMM micro-kernel call handles in any set (a table's gemm_rows:
// register blocking of gemm_rows x 16 floats, more where there are more registers).
constexpr int64_t kMaxGemmRows = 16;

// Queries in one attend_block call: one 16-wide panel of transposed queries.
constexpr int64_t kAttendBlock = 16;

// One head's causal attention for m <= kAttendBlock consecutive queries: query i, at
// position pos0 + i, attends to keys and values [0, pos0 + i]. T: the KV cache's element,
// float, bfloat16's bits (uint16_t) or int8_t (kv_type.h), whose rows have scales: key
// row j stands for keys[j] * key_scales[j], and so for values.
template <class T>
struct AttendBlockOf {
  float* out;       // (m, d), row stride ldo
  int64_t ldo;
  const float* q;   // (m, d), row stride ldq
  int64_t ldq;
  const T* keys;    // (pos0 + m, d)
  const T* values;  // (pos0 + m, d)
  int64_t m, pos0, d;
  float scale;
  const float* key_scales = nullptr;    // (pos0 + m): int8 only
  const float* value_scales = nullptr;
};
using AttendBlock = AttendBlockOf<float>;
using AttendBlockBf16 = AttendBlockOf<uint16_t>;
using AttendBlockI8 = AttendBlockOf<int8_t>;
// The keys that the next attend call will read, n rows of the cache's elements: the call
// before it starts fetching them toward the cache, so that the next does not start cold.
struct AttendNext {
  const void* keys = nullptr;
  int64_t n = 0;
};

// Floats of scratch an attend_block call over n = pos0 + m keys needs.
inline int64_t attend_block_scratch(int64_t n, int64_t d) { return (n + d) * kAttendBlock; }

// How a GEMM micro-kernel finishes its tile, product P:
//   c = gelu_new([c +] P [+ bias])   with each part optional.
// The first of a tile's depth blocks sets it from [c +] bias, the last applies the MLP's
// activation, all while the tile is still in registers. Meanwhile the call may fetch
// prefetch_lines 64-byte lines from `prefetch` into L2 (a hint: the blocked GEMM's share of
// the next weight panel), one every 16 steps among its FMAs, where they cost no time of
// their own (0.7-1.3% of a prompt against a loop of them between calls).
struct TileEnd {
  const float* bias = nullptr;  // 16 floats, or null
  bool add_to_c = true;         // else c's old contents are never read
  bool gelu_tanh = false;
  const char* prefetch = nullptr;
  int64_t prefetch_lines = 0;
};

// Weight panels one gemv call reads side by side. Each panel is a sequential stream, and a
// core draws more read bandwidth from memory with several streams in flight than with one
// (measured on the development machine, one thread: 16 GB/s with one, 21-26 with four).
constexpr int64_t kGemvPanels = 4;

// exp_weights gives exactly 0 below this exponent: float32's exp underflows there into
// subnormals (about 1e-38 of the top token's weight), which no draw can tell from 0, and a
// -inf logit (a banned token) must weigh exactly 0.
constexpr float kExpWeightFloor = -87.3365478515625f;

// The smallest largest |x| of a group that quantize_group scales: 127 / it is finite.
constexpr float kQuantizeFloor = 127.0f / 3.40282347e38f;

// Rows of depth a float product sums on their own before adding them to the output: the
// blocked GEMM's depth block, and the groups of the few-row kernels, which sum the same way.
constexpr int64_t kDepthBlock = 256;

// The input rows of a product with a stored weight matrix. Float types read f; integer
// types read the rows quantized to int8 (ops/matmul.cpp quantizes them once a product):
// per row and group of the type's group_rows, scale = max |x| / 127, q = round(x / scale),
// and sum = the sum of the group's q.
struct ProductRows {
  const float* f = nullptr;   // (m, k), row stride ld (packed for gemm_rows: WeightKernels)
  int64_t ld = 0;
  // (m, k padded to kDotRows), ldq bytes a row, as the streaming product's tiles: a tile of
  // rows [r, r + m) at q + r * ldq keeps its rows' 4-deep blocks side by side, block b of
  // row r + i at (b * m + i) * kDotRows (row-major where m = 1).
  const int8_t* q = nullptr;
  int64_t ldq = 0;
  // (groups, m): row i's value for group g at g * ldg + i. Group-major, as the threads
  // share the quantizing out (whole groups each), so that they do not write one line.
  const float* scale = nullptr;
  const int32_t* sum = nullptr;
  int64_t ldg = 0;

  ProductRows from(int64_t row) const {
    ProductRows r = *this;
    if (f != nullptr) r.f += row * ld;
    if (q != nullptr) {
      r.q += row * ldq;
      r.scale += row;
      r.sum += row;
    }
    return r;
  }
};

// The products with a stored weight matrix of one type. How each output is summed
// (src/kernels/weight_kernels.inc) is the same in both kernels and for every number of
// rows, so a row's result never depends on what else shares its product.
//
// Both fetch the `ahead` panels that follow the ones they read into L2 as they go (a hint,
// read nowhere else): the caller's next panels, which then arrive while this call computes
// instead of after it. A quantized panel is a short stream (12 KB for int8 at k = 768), and
// each new one would otherwise start with the hardware prefetcher cold.
struct WeightKernels {
  // c (panels, 16) += a (one row) @ panels [p, p + panels) of w: a decode step's product,
  // kGemvPanels panels read side by side; each group of them fetches the next group, the
  // last one up to `ahead` panels past p + panels.
  void (*gemv)(const PackedMatrix& w, int64_t p, int64_t panels, const ProductRows& a,
               float* c, int64_t ahead);
  // c (m, 16; row stride ldc) += a (m rows) @ panel p of w, 1 <= m <= kMaxGemmRows;
  // fetches panels [p + 1, p + 1 + ahead). A float type's rows come packed: row i's input
  // at depth r is a.f[r * a.ld + i] (gemv reads its one row plainly, a.f[r]).
  void (*gemm_rows)(const PackedMatrix& w, int64_t p, int64_t m, const ProductRows& a,
                    float* c, int64_t ldc, int64_t ahead);
  // dst (rows, 16) = rows [r0, r0 + rows) of panel p of w as float32: the weights of a
  // prompt's blocked GEMM, converted once per block. Float types only (null for integer
  // types, which take gemm_rows at every row count).
  void (*unpack)(const PackedMatrix& w, int64_t p, int64_t r0, int64_t rows, float* dst);
};

// m.encode_rows(p, r0, rows, f): the table's encoder where a set has none of its own.
void encode_rows_reference(const PackedMatrix& m, int64_t p, int64_t r0, int64_t rows,
                           const float* f);

struct KernelTable {
  const char* name;
  // The CPU features the set's code uses, space-separated ("" for generic).
  const char* features;
  // Rows of A that gemm_packed and pack_tile handle at once, and the most gemm_tile takes:
  // at most kMaxGemmRows, at least kGemvPanels.
  int64_t gemm_rows;
  // Rows the weight kernels' gemm_rows takes at once where it runs best: as many as the
  // registers hold the accumulators of, at most kMaxGemmRows. The streaming path splits a
  // product's rows into as few tiles of at most this many as it can, each weight panel
  // being read once per tile.
  int64_t stream_rows;
  // Running values in the multiply_add kernel: as many independent chains of FMAs as fill
  // the set's FMA units. Each round is 2 * multiply_add_lanes flops.
  int64_t multiply_add_lanes;

  // c (m, 16; row stride ldc) += a (m, k; row stride lda) @ b (k, 16), for 1 <= m <= gemm_rows.
  void (*gemm_tile)(int64_t m, int64_t k, const float* a, int64_t lda, const float* b, float* c,
                    int64_t ldc);

  // c (panels, 16) += a (k) @ [panel 0 | panel 1 | ...], panel q being the (k, 16) floats at
  // b + q * k * 16: a decode step's product, which streams weights from memory, reading
  // kGemvPanels panels side by side. Each output is summed exactly as gemm_tile sums it, so
  // results never depend on how callers group the panels, and a row gets the same bits
  // from either kernel.
  void (*gemv)(int64_t k, const float* a, const float* b, int64_t panels, float* c);

  // c (gemm_rows, 16; row stride ldc) = end(a (k, gemm_rows) @ b (k, 16)), where a holds
  // the A tile packed column by column: a[p * gemm_rows + i] = A[i][p]. The prompt path's
  // register-blocked micro-kernel: every load it makes is sequential.
  void (*gemm_packed)(int64_t k, const float* a, const float* b, float* c, int64_t ldc,
                      const TileEnd& end);

  // dst (kc, gemm_rows) = A (m, kc; row stride ld) packed for gemm_packed: dst[p * gemm_rows
  // + i] = A[i][p], zero for the rows past m. Writes exactly kc * gemm_rows floats.
  void (*pack_tile)(float* dst, const float* src, int64_t ld, int64_t m, int64_t kc);

  // One group of an integer product's input (ProductRows), n floats: *scale = max |x| / 127
  // and q (n) = round(x * (127 / max |x|)) (ties to even), *sum = the sum of q; scale and q
  // 0 where max |x| < kQuantizeFloor (an all-zero group). A group holding an infinity or
  // NaN gets scale NaN (its outputs are NaN, as in float32) and q 0. The same bits in every
  // set.
  void (*quantize_group)(const float* x, int64_t n, int8_t* q, float* scale, int32_t* sum);

  // out (n) = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias
  void (*layernorm)(float* out, const float* x, const float* weight, const float* bias, int64_t n,
                    float eps);

  // x (n) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (GPT-2's "gelu_new")
  void (*gelu_tanh)(float* x, int64_t n);

  // sum of x (n), read as `streams` >= 1 equal parts side by side, a cache line or two of
  // each in turn (what is left past the parts' whole steps is added last): a pure streaming
  // read, the bandwidth probe's loop. Several streams in flight draw more bandwidth.
  float (*sum)(const float* x, int64_t n, int64_t streams);

  // multiply_add_lanes running values v, value j started at x + j and taken through
  // v = v * 0.5 + 1 `rounds` times, on registers only; returns their sum (the sum over j of
  // 2 + (x + j - 2) / 2^rounds, up to rounding). The compute probe's loop: with as many
  // independent chains as the ISA needs to keep every FMA unit busy, it runs at the
  // arithmetic peak that the GEMM micro-kernel is measured against.
  float (*multiply_add)(int64_t rounds, float x);

  // w (n) = exp(x (n) - shift), exactly 0 where x - shift < kExpWeightFloor (-inf and NaN
  // included); returns sum(w) in double. A sampler's softmax weights, shift being max(x).
  double (*exp_weights)(float* w, const float* x, int64_t n, float shift);

  // The index of the first NaN in x (n >= 1), else of the first of its largest values:
  // numpy's argmax, what greedy sampling picks. A step computes it for each row of logits
  // while they are in cache, where numpy's pass over them cost a 16-sequence decode step
  // ~0.15 ms.
  int64_t (*argmax)(const float* x, int64_t n);

  // out (d) = softmax(scale * K (n, d) @ q (d)) @ V (n, d); scores: scratch of n floats.
  // next: what the caller's next call reads (only fetched toward the cache, never read).
  void (*attend)(float* out, const float* q, const float* keys, const float* values, int64_t n,
                 int64_t d, float scale, float* scores, const AttendNext& next);

  // The prompt's attention: a block of queries at once, so that scores and the weighted sum
  // of values are matrix products. scratch: attend_block_scratch(pos0 + m, d) floats.
  void (*attend_block)(const AttendBlock& job, float* scratch);

  // attend and attend_block over a bfloat16 cache (KvType::BF16): each key and value is
  // widened to float32 (exactly) as it is read, and the arithmetic is the float32 kernels'.
  void (*attend_bf16)(float* out, const float* q, const uint16_t* keys, const uint16_t* values,
                      int64_t n, int64_t d, float scale, float* scores, const AttendNext& next);
  void (*attend_block_bf16)(const AttendBlockBf16& job, float* scratch);

  // attend and attend_block over an int8 cache (KvType::I8): each row is widened and
  // scaled as it is read (the scales applied to whole scores and softmax weights). A
  // prompt's block takes its queries one by one (attend), not the matrix products.
  void (*attend_i8)(float* out, const float* q, const int8_t* keys, const int8_t* values,
                    const float* key_scales, const float* value_scales, int64_t n, int64_t d,
                    float scale, float* scores, const AttendNext& next);
  void (*attend_block_i8)(const AttendBlockI8& job, float* scratch);

  // out (n) = x (n) rounded to bfloat16 (float_to_bf16's bits): keys and values going into
  // a bfloat16 cache, every step. In the set's own instructions: the portable build's loop
  // (SSE2 on x86) was ~3% of a 16-sequence int8 decode step with a bfloat16 cache.
  void (*to_bf16)(const float* x, uint16_t* out, int64_t n);

  // The products with a stored weight matrix, indexed by WeightType: what matmul runs
  // for every weight type (float32 included) and row count, but the blocked GEMM's.
  WeightKernels weights[kWeightTypes];

  // m.encode_rows(p, r0, rows, f), the same bytes, faster where the set has its own (the
  // integer types' quantizer, src/isa/encode_kernels.inc): how a load stores each matrix.
  void (*encode_rows)(const PackedMatrix& m, int64_t p, int64_t r0, int64_t rows,
                      const float* f) = encode_rows_reference;
};

// Each set's table. A set exists in a build only where its compiler flags do; call one only
// when available_isas() lists it: the CPU (and the OS) can run it.
const KernelTable& generic_kernels();
#if defined(GPT2CPU_HAVE_AVX2)
const KernelTable& avx2_kernels();
#endif
#if defined(GPT2CPU_HAVE_AVX512)
const KernelTable& avx512_kernels();
// The avx512 set's weight kernels with AVX512-VNNI's byte dot products (isa/avx512_vnni.cpp):
// the set's table takes them on CPUs that have it.
void fill_avx512_vnni_weight_kernels(WeightKernels* out);
bool cpu_has_avx512_vnni();
#endif
#if defined(GPT2CPU_HAVE_NEON)
const KernelTable& neon_kernels();
#endif

// The process's default table: GPT2CPU_ISA's if set, else the best this CPU runs. Chosen
// by init_default_isa() (the Python module calls it at import) or on first use.
const KernelTable& kernels();
// Chooses the default now: throws std::invalid_argument if GPT2CPU_ISA names an unknown
// set or one this CPU cannot run. Call it where an exception can be reported, never from a
// parallel region.
void init_default_isa();
// Names of the tables this CPU can run, best last.
std::vector<std::string> available_isas();
// The named table ("auto": the best). Throws std::invalid_argument for an unknown name or
// one this CPU cannot run.
const KernelTable& kernels_named(const std::string& name);
// Switch the default table (tests and bug reports); models keep the table they were
// loaded with. Throws as kernels_named.
void set_isa(const std::string& name);
// The CPU's features that matter to the sets, by name (as `lscpu` spells them) and whether
// it has them: what kernel_info() reports.
std::vector<std::pair<std::string, bool>> cpu_features();

}  // namespace gpt2cpu
