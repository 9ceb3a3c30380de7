// Single operators on numpy arrays, so tests can hold each kernel against a numpy reference
// on every ISA and thread count, and benchmarks can time them alone. Inputs are never
// modified: every function returns a new array.
#include "gpt2cpu/kernels.h"

#include <cstring>

#include "common.h"
#include "gpt2cpu/buffer.h"
#include "gpt2cpu/ops.h"

namespace gpt2cpu::bindings {

namespace {

int checked_threads(int threads) {
  require(threads >= 1 && threads <= 4096, "threads must be in [1, 4096]");
  return threads;
}

FloatArray copy_of(const FloatArray& a) {
  FloatArray out(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
  std::memcpy(out.mutable_data(), a.data(), a.size() * sizeof(float));
  return out;
}

struct PackedWeight {
  Buffer storage;
  PackedMatrix matrix;

  explicit PackedWeight(FloatArray weight) {
    require(weight.ndim() == 2, "weight must be 2-D (k, n)");
    const int64_t k = weight.shape(0), n = weight.shape(1);
    require(k >= 1 && n >= 1, "empty matrices are not supported");
    storage.resize(static_cast<size_t>(PackedMatrix::storage(k, n)));
    matrix = PackedMatrix{storage.data(), k, n};
    matrix.pack_from_k_by_n(weight.data());
  }

  FloatArray matmul(FloatArray inp, std::optional<FloatArray> bias, std::optional<FloatArray> out,
                    int threads, std::optional<Activation> activation) const {
    require(inp.ndim() == 2, "inp must be 2-D");
    const int64_t t = inp.shape(0), k = matrix.k, n = matrix.n;
    require(inp.shape(1) == k, "weight must have as many rows as inp has columns");
    require(t >= 1, "inp must have at least one row");
    if (bias) require_shape(*bias, "bias", {n});
    if (out) require_shape(*out, "out", {t, n});
    require(!(out && activation), "activation applies to inp @ weight + bias only, not with out");
    checked_threads(threads);
    FloatArray result = out ? copy_of(*out) : FloatArray({t, n});
    py::gil_scoped_release release;
    if (activation) {
      matmul_activate(result.mutable_data(), n, inp.data(), k, t, matrix,
                      bias ? bias->data() : nullptr, *activation, threads);
      return result;
    }
    gpt2cpu::matmul(result.mutable_data(), n, inp.data(), k, t, matrix,
                    bias ? bias->data() : nullptr, out ? Accumulate::Yes : Accumulate::No, threads);
    return result;
  }
};

}  // namespace

void bind_kernels(py::module_& m) {
  m.def("isa", []() { return std::string(kernels().name); }, "The kernel table in use.");
  m.def("available_isas", &available_isas, "The kernel tables this CPU can run, best last.");
  m.def("set_isa", &set_isa, py::arg("name"),
        "Use the named kernel table ('generic', 'avx2' or 'auto') from now on, process-wide.");

  py::class_<PackedWeight>(m, "PackedWeight",
                           "A weight matrix (k, n) packed once, as the model stores it.")
      .def(py::init<FloatArray>(), py::arg("weight"))
      .def_property_readonly("shape", [](const PackedWeight& w) {
        return py::make_tuple(w.matrix.k, w.matrix.n);
      })
      .def("matmul", &PackedWeight::matmul, py::arg("inp"), py::arg("bias") = py::none(),
           py::arg("out") = py::none(), py::arg("threads") = 1,
           py::arg("activation") = py::none(),
           "[out +] inp (t, k) @ weight + bias (n), or activation(inp @ weight + bias), as a "
           "new array");

  m.def(
      "matmul",
      [](FloatArray inp, FloatArray weight, std::optional<FloatArray> bias,
         std::optional<FloatArray> out, int threads, std::optional<Activation> activation) {
        return PackedWeight(std::move(weight)).matmul(std::move(inp), std::move(bias),
                                                      std::move(out), threads, activation);
      },
      py::arg("inp"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("out") = py::none(),
      py::arg("threads") = 1, py::arg("activation") = py::none(),
      "[out +] inp (t, k) @ weight (k, n) + bias (n), or activation(inp @ weight + bias), as a "
      "new array");

  m.def(
      "sum",
      [](FloatArray x) {
        const auto n = static_cast<int64_t>(x.size());
        py::gil_scoped_release release;
        return kernels().sum(x.data(), n);
      },
      py::arg("x"), "Sum of all elements: the bandwidth probe's streaming loop.");

  m.def(
      "read_bandwidth",
      [](size_t bytes, int threads, int repeats) {
        checked_threads(threads);
        require(bytes >= 4096 && bytes <= (size_t{1} << 36), "bytes must be in [4 KiB, 64 GiB]");
        require(repeats >= 1, "repeats must be >= 1");
        py::gil_scoped_release release;
        return measure_read_bandwidth(bytes, threads, repeats);
      },
      py::arg("bytes"), py::arg("threads"), py::arg("repeats") = 5,
      "Best-of-repeats memory read bandwidth in bytes/s over a buffer of the given size.");

  m.def(
      "layernorm",
      [](FloatArray x, FloatArray weight, FloatArray bias, float eps, int threads) {
        require(x.ndim() == 2, "x must be 2-D (rows, n)");
        const int64_t t = x.shape(0), n = x.shape(1);
        require(n >= 1, "rows must not be empty");
        require_shape(weight, "weight", {n});
        require_shape(bias, "bias", {n});
        require(eps > 0.0f, "eps must be positive");
        checked_threads(threads);
        FloatArray out({t, n});
        py::gil_scoped_release release;
        layernorm(out.mutable_data(), x.data(), weight.data(), bias.data(), t, n, eps, threads);
        return out;
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("eps") = 1e-5f,
      py::arg("threads") = 1);

  m.def(
      "activation",
      [](FloatArray x, Activation kind, int threads) {
        require(valid_activation(kind), "unknown activation");
        checked_threads(threads);
        FloatArray out = copy_of(x);
        py::gil_scoped_release release;
        activate(out.mutable_data(), static_cast<int64_t>(out.size()), kind, threads);
        return out;
      },
      py::arg("x"), py::arg("kind") = Activation::GeluTanh, py::arg("threads") = 1);

  m.def(
      "attention",
      [](FloatArray q, FloatArray k, FloatArray v, int64_t pos0, float scale, int threads) {
        // q (t, H*D) for positions [pos0, pos0 + t); k, v (H, capacity, D) hold [0, pos0 + t)
        require(q.ndim() == 2 && k.ndim() == 3, "q must be 2-D and k 3-D");
        const int64_t t = q.shape(0), H = k.shape(0), cap = k.shape(1), D = k.shape(2);
        require(t >= 1 && H >= 1 && D >= 1, "empty attention is not supported");
        require_shape(q, "q", {t, H * D});
        require_shape(v, "v", {H, cap, D});
        require(pos0 >= 0 && pos0 <= cap - t, "pos0 + len(q) must be within the cache capacity");
        checked_threads(threads);
        FloatArray out({t, H * D});
        py::gil_scoped_release release;
        attention(out.mutable_data(), q.data(), H * D, k.data(), v.data(),
                  AttentionShape{t, pos0, H, D, cap, scale}, threads);
        return out;
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("pos0"), py::arg("scale"),
      py::arg("threads") = 1);
}

}  // namespace gpt2cpu::bindings
