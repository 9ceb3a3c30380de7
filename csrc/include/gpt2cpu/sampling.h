#pragma once
// The passes over a whole vocabulary row that picking a token takes: softmax weights, the
// top-k and top-p floors, and the draw. Python's sampler (sampling.py) keeps the pipeline
// and its rules; these run between two decode steps, where numpy's passes and temporaries
// cost several percent of a step.

#include <cstdint>

namespace gpt2cpu {

// out (n) = x (n) with Hugging Face's repetition penalty on each of ids (count, each in
// [0, n)): a positive logit divided by penalty, a negative one multiplied. out starts as
// a copy of x; reading x means an id listed twice is penalised once, as in HF. Throws
// std::out_of_range for an id outside [0, n), before changing anything.
void apply_repetition_penalty(float* out, const float* x, int64_t n, const int64_t* ids,
                              int64_t count, float penalty);

// w (n) = exp(x (n) - max x), the unnormalised softmax: the top weight is 1, and a weight
// is exactly 0 where x is -inf or exp underflows (kernel_table.h, kExpWeightFloor). Returns
// sum(w) in double; 0 when every x is -inf. Throws std::invalid_argument if x holds NaN
// or +inf, for which no distribution exists.
double softmax_weights(float* w, const float* x, int64_t n);

// The floors below are the value of the first token kept when tokens are dropped from the
// least likely up, as long as the running total of what they hold, the dropped token's
// own included, stays <= budget: Hugging Face's rule. Every token equal to the floor is
// kept with it, and the most likely token always is, so `value >= floor` is the filter.

// top-p over weights w (n) >= 0: each token holds its weight, budget = (1 - top_p) sum(w).
// Throws std::invalid_argument for NaN or a negative weight, or if no weight is positive.
float top_p_floor(const float* w, int64_t n, double budget);

// top-p as Hugging Face applies it to tied weights: its sort puts equal weights side by
// side, so the rule can drop some of the tokens equal to the floor and keep the others
// (all-equal weights and a small top_p keep one token, not the row). `drop` is how many of
// the tokens whose weight equals `floor` go; Hugging Face's stable sort on small rows drops
// the first ones in index order.
struct TopPCut {
  float floor;
  int64_t drop;
};
TopPCut top_p_cut(const float* w, int64_t n, double budget);

// top-k over logits x (n): each token holds 1, budget = n - k. The k-th largest value,
// 1 <= k <= n. Throws std::invalid_argument if x holds NaN.
float kth_largest(const float* x, int64_t n, int64_t k);

// The token a uniform u in [0, 1) picks from weights w (n) >= 0, where every weight below
// floor counts as 0: the first i with w[0] + ... + w[i] > u * sum(w), sums in double.
// Never a token of weight 0. Throws std::invalid_argument if no weight is left.
int64_t draw(const float* w, int64_t n, float floor, double u);

}  // namespace gpt2cpu
