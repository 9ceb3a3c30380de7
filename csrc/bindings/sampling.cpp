// Sampling's passes over a row of logits (gpt2cpu/sampling.h), for gpt2cpu.sampling.
// Each returns new arrays or numbers; the caller's arrays are only read.
#include "gpt2cpu/sampling.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include "gpt2cpu/kernel_table.h"

namespace gpt2cpu::bindings {

namespace {

int64_t row_length(const FloatArray& a, const char* name) {
  require(a.ndim() == 1, std::string(name) + " must be one-dimensional");
  require(a.shape(0) >= 1, std::string(name) + " must not be empty");
  return a.shape(0);
}

}  // namespace

void bind_sampling(py::module_& m) {
  m.def(
      "repetition_penalty",
      [](FloatArray x, const py::object& id_list, float penalty) {
        const int64_t n = row_length(x, "x");
        const IdArray ids = id_array(id_list, "ids");
        require(ids.ndim() == 1, "ids must be one-dimensional");
        require(std::isfinite(penalty) && penalty > 0.0f, "penalty must be > 0 and finite");
        FloatArray out(n);
        std::memcpy(out.mutable_data(), x.data(), static_cast<size_t>(n) * sizeof(float));
        // A private copy of the ids, so that the ids checked are the ids used.
        std::vector<int64_t> local(ids.data(), ids.data() + ids.shape(0));
        float* o = out.mutable_data();
        {
          ReleaseGil release;
          apply_repetition_penalty(o, x.data(), n, local.data(),
                                   static_cast<int64_t>(local.size()), penalty);
        }
        return out;
      },
      py::arg("x"), py::arg("ids"), py::arg("penalty"),
      "A copy of x with Hugging Face's repetition penalty on the token ids (each once, however "
      "often listed): a positive logit divided by penalty, a negative one multiplied. "
      "IndexError for an id outside the row.");

  m.def(
      "softmax_weights",
      [](FloatArray x) {
        const int64_t n = row_length(x, "x");
        FloatArray w(n);
        double total = 0.0;
        {
          ReleaseGil release;
          total = softmax_weights(w.mutable_data(), x.data(), n);
        }
        return py::make_tuple(w, total);
      },
      py::arg("x"),
      "(w, total): w = exp(x - max x) as float32, exactly 0 for -inf and where exp "
      "underflows; total = sum(w) in float64, 0 when every x is -inf. ValueError for NaN or "
      "+inf.");

  m.def(
      "argmax",
      [](FloatArray x) {
        const int64_t n = row_length(x, "x");
        ReleaseGil release;
        return kernels().argmax(x.data(), n);
      },
      py::arg("x"),
      "np.argmax(x) by the kernel set's pass, which a step runs over each row of logits for "
      "greedy sampling: the first NaN, else the first of the largest values.");

  m.def(
      "top_p_floor",
      [](FloatArray w, double budget) {
        const int64_t n = row_length(w, "w");
        require(std::isfinite(budget), "budget must be finite");
        ReleaseGil release;
        return top_p_floor(w.data(), n, budget);
      },
      py::arg("w"), py::arg("budget"),
      "The smallest weight that Hugging Face's top-p rule keeps when tokens are dropped from "
      "the least likely up while their running total stays <= budget, (1 - top_p) * sum(w). "
      "Keep w >= it.");

  m.def(
      "top_p_cut",
      [](FloatArray w, double budget) {
        const int64_t n = row_length(w, "w");
        require(std::isfinite(budget), "budget must be finite");
        TopPCut cut{};
        {
          ReleaseGil release;
          cut = top_p_cut(w.data(), n, budget);
        }
        return py::make_tuple(cut.floor, cut.drop);
      },
      py::arg("w"), py::arg("budget"),
      "(floor, drop): top_p_floor's floor, and how many of the weights equal to it the rule "
      "drops too (Hugging Face's sort drops tied tokens one at a time): the first ones in "
      "index order.");

  m.def(
      "kth_largest",
      [](FloatArray x, int64_t k) {
        const int64_t n = row_length(x, "x");
        require(k >= 1 && k <= n, "k must be in [1, len(x)]");
        ReleaseGil release;
        return kth_largest(x.data(), n, k);
      },
      py::arg("x"), py::arg("k"), "The k-th largest value of x: top-k keeps x >= it.");

  m.def(
      "draw",
      [](FloatArray w, float floor, double u) {
        const int64_t n = row_length(w, "w");
        require(floor >= 0.0f, "floor must be >= 0");
        require(u >= 0.0 && u < 1.0, "u must be in [0, 1)");
        ReleaseGil release;
        return draw(w.data(), n, floor, u);
      },
      py::arg("w"), py::arg("floor"), py::arg("u"),
      "The index that u in [0, 1) picks by inverse CDF from the weights w, each weight below "
      "floor counted as 0. ValueError if none is left.");
}

}  // namespace gpt2cpu::bindings
