// `_core.testing`: single operators on numpy arrays, so tests can hold each kernel against a
// numpy reference on every kernel set and thread count, and benchmarks can time them alone,
// on the process's default set (set_isa). Inputs are never modified: every function returns
// a new array. Not part of the public API.
#include "gpt2cpu/kernel_table.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "common.h"
#include "gpt2cpu/buffer.h"
#include "gpt2cpu/ops.h"

namespace gpt2cpu::bindings {

namespace {

// The most rounds a probe loop may run: ~10 s of multiply-adds on one core.
constexpr int64_t kMostRounds = 3'000'000'000;


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

  PackedWeight(FloatArray weight, const std::string& dtype, int threads) {
    require(weight.ndim() == 2, "weight must be 2-D (k, n)");
    const int64_t k = weight.shape(0), n = weight.shape(1);
    require(k >= 1 && n >= 1, "empty matrices are not supported");
    checked_threads(threads);
    const WeightType type = weight_type_named(dtype);
    const int64_t data = (PackedMatrix::data_bytes(type, k, n) + 63) / 64 * 64;
    const int64_t scales = PackedMatrix::scale_bytes(type, k, n);
    storage.resize(static_cast<size_t>(data + scales) / sizeof(float));
    uint8_t* base = reinterpret_cast<uint8_t*>(storage.data());
    matrix = PackedMatrix{type, base, scales != 0 ? reinterpret_cast<float*>(base + data) : nullptr,
                          k, n};
    ReleaseGil release;
    matrix.pack_from_k_by_n(weight.data(), threads);
  }

  // (k, n): what the stored weights stand for, as float32 (dequantized).
  FloatArray dequantized() const {
    FloatArray out({matrix.k, matrix.n});
    std::vector<float> column(static_cast<size_t>(matrix.k));
    float* o = out.mutable_data();
    for (int64_t j = 0; j < matrix.n; ++j) {
      matrix.column(j, column.data());
      for (int64_t r = 0; r < matrix.k; ++r) o[r * matrix.n + j] = column[static_cast<size_t>(r)];
    }
    return out;
  }

  FloatArray matmul(FloatArray inp, std::optional<FloatArray> bias, std::optional<FloatArray> out,
                    int threads, std::optional<Activation> activation, bool team) const {
    require(inp.ndim() == 2, "inp must be 2-D");
    const int64_t t = inp.shape(0), k = matrix.k, n = matrix.n;
    require(inp.shape(1) == k, "weight must have as many rows as inp has columns");
    require(t >= 1, "inp must have at least one row");
    if (bias) require_shape(*bias, "bias", {n});
    if (out) require_shape(*out, "out", {t, n});
    require(!(out && activation), "activation applies to inp @ weight + bias only, not with out");
    require(!activation || valid_activation(*activation), "unknown activation");
    require(!team || t < kTeamRows, "a team runs fewer than " + std::to_string(kTeamRows) + " rows");
    checked_threads(threads);
    kernels();  // a bad GPT2CPU_ISA raises here, not inside the region below
    FloatArray result = out ? copy_of(*out) : FloatArray({t, n});
    float* c = result.mutable_data();
    const float* b = bias ? bias->data() : nullptr;
    ReleaseGil release;
    with_parallel(
        threads, team,
        [&](const Parallel& par) {
          if (activation) {
            matmul_activate(c, n, inp.data(), k, t, matrix, b, *activation, par);
          } else {
            gpt2cpu::matmul(c, n, inp.data(), k, t, matrix, b,
                            out ? Accumulate::Yes : Accumulate::No, par);
          }
        },
        kernels(), team ? product_scratch(t, k, matrix.type, threads) : 0);
    return result;
  }
};

// A cache (H, capacity, D) as the kv type holds it: float32 arrays as they are, bfloat16
// rounded and int8 quantized row by row into a buffer of its own (as store_keys_values
// does; kv_type.h: KvLayout).
struct CacheCopy {
  Buffer storage;
  const void* data;

  CacheCopy(const FloatArray& cache, KvType kv) : data(cache.data()) {
    if (kv == KvType::F32) return;
    const auto n = static_cast<int64_t>(cache.size());
    if (kv == KvType::BF16) {
      storage.resize(static_cast<size_t>(n + 1) / 2);
      kernels().to_bf16(cache.data(), reinterpret_cast<uint16_t*>(storage.data()), n);
    } else {
      const int64_t H = cache.shape(0), cap = cache.shape(1), D = cache.shape(2);
      const KvLayout layout(kv, D, cap);
      storage.resize(static_cast<size_t>(H * layout.block_bytes + 3) / 4);
      char* base = reinterpret_cast<char*>(storage.data());
      for (int64_t h = 0; h < H; ++h) {
        char* block = base + h * layout.block_bytes;
        float* scales = reinterpret_cast<float*>(block + layout.scales_at);
        for (int64_t p = 0; p < cap; ++p) {
          quantize_kv_row(cache.data() + (h * cap + p) * D, D,
                          reinterpret_cast<int8_t*>(block + p * layout.row_bytes), scales + p);
        }
      }
    }
    data = storage.data();
  }
};

}  // namespace

void bind_testing(py::module_& m) {
  m.def("isa", []() { return std::string(kernels().name); }, "The kernel table in use.");
  m.def("available_isas", &available_isas, "The kernel tables this CPU can run, best last.");
  m.def("set_isa", &set_isa, py::arg("name"),
        "Make the named kernel set ('auto': the best) the process's default from now on: what "
        "these functions and models loaded afterwards without an isa use.");

  py::class_<PackedWeight>(m, "PackedWeight",
                           "A weight matrix (k, n) packed once, as the model stores it.")
      .def(py::init<FloatArray, const std::string&, int>(), py::arg("weight"),
           py::arg("dtype") = "float32", py::arg("threads") = 1)
      .def_property_readonly("shape", [](const PackedWeight& w) {
        return py::make_tuple(w.matrix.k, w.matrix.n);
      })
      .def_property_readonly("dtype",
                             [](const PackedWeight& w) { return info(w.matrix.type).name; })
      .def_property_readonly("nbytes", [](const PackedWeight& w) {
        return PackedMatrix::data_bytes(w.matrix.type, w.matrix.k, w.matrix.n) +
               PackedMatrix::scale_bytes(w.matrix.type, w.matrix.k, w.matrix.n);
      })
      .def("dequantized", &PackedWeight::dequantized,
           "(k, n) float32: the weights as stored (after rounding to the type), the reference "
           "a product is checked against")
      .def("matmul", &PackedWeight::matmul, py::arg("inp"), py::arg("bias") = py::none(),
           py::arg("out") = py::none(), py::arg("threads") = 1,
           py::arg("activation") = py::none(), py::arg("team") = false,
           "[out +] inp (t, k) @ weight + bias (n), or activation(inp @ weight + bias), as a "
           "new array");

  m.def(
      "matmul",
      [](FloatArray inp, FloatArray weight, std::optional<FloatArray> bias,
         std::optional<FloatArray> out, int threads, std::optional<Activation> activation,
         bool team) {
        return PackedWeight(std::move(weight), "float32", 1)
            .matmul(std::move(inp), std::move(bias), std::move(out), threads, activation, team);
      },
      py::arg("inp"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("out") = py::none(),
      py::arg("threads") = 1, py::arg("activation") = py::none(), py::arg("team") = false,
      "[out +] inp (t, k) @ weight (k, n) + bias (n), or activation(inp @ weight + bias), as a "
      "new array");

  m.def(
      "sum",
      [](FloatArray x, int64_t streams) {
        require(streams >= 1 && streams <= 64, "streams must be in [1, 64]");
        const auto n = static_cast<int64_t>(x.size());
        ReleaseGil release;
        return kernels().sum(x.data(), n, streams);
      },
      py::arg("x"), py::arg("streams") = 1,
      "Sum of all elements, read as `streams` parts side by side: the bandwidth probe's "
      "streaming loop.");

  m.def(
      "read_bandwidth",
      [](size_t bytes, int threads, int repeats, std::optional<std::string> isa) {
        checked_threads(threads);
        require(bytes >= 4096 && bytes <= (size_t{1} << 36), "bytes must be in [4 KiB, 64 GiB]");
        require(repeats >= 1, "repeats must be >= 1");
        const KernelTable& kt = isa ? kernels_named(*isa) : kernels();
        ReleaseGil release;
        return measure_read_bandwidth(bytes, threads, repeats, kt);
      },
      py::arg("bytes"), py::arg("threads"), py::arg("repeats") = 5, py::arg("isa") = py::none(),
      "Best-of-repeats memory read bandwidth in bytes/s over a buffer of the given size.");

  m.def(
      "multiply_add",
      [](int64_t rounds, float x) {
        // Bounded: the loop runs without the GIL, where Ctrl-C cannot stop it.
        require(rounds >= 0 && rounds <= kMostRounds, "rounds must be in [0, 3e9]");
        ReleaseGil release;
        return kernels().multiply_add(rounds, x);
      },
      py::arg("rounds"), py::arg("x"),
      "The compute probe's loop: multiply_add_lanes() values started at x, each taken through "
      "v = v * 0.5 + 1 `rounds` times; their sum.");
  m.def(
      "multiply_add_lanes", []() { return kernels().multiply_add_lanes; },
      "Values multiply_add runs on the default set: its sum is over these.");
  m.def(
      "gemm_rows", []() { return kernels().gemm_rows; },
      "Rows of the default set's GEMM register tile.");

  m.def(
      "multiply_add_peak",
      [](int threads, int64_t rounds, int repeats, std::optional<std::string> isa) {
        checked_threads(threads);
        require(rounds >= 1 && rounds <= kMostRounds, "rounds must be in [1, 3e9]");
        require(repeats >= 1 && repeats <= 1000, "repeats must be in [1, 1000]");
        const KernelTable& kt = isa ? kernels_named(*isa) : kernels();
        ReleaseGil release;
        return measure_multiply_add_peak(threads, rounds, repeats, kt);
      },
      py::arg("threads"), py::arg("rounds") = 10'000'000, py::arg("repeats") = 3,
      py::arg("isa") = py::none(),
      "Best-of-repeats arithmetic rate in flops/s of the multiply_add loop on `threads` "
      "threads, `rounds` rounds each.");

  m.attr("TEAM_ROWS") = kTeamRows;
  m.def(
      "check_team",
      [](int threads, int rounds, int delay_us) {
        checked_threads(threads);
        require(rounds >= 1 && rounds <= 1'000'000 && delay_us >= 0 && delay_us <= 1'000'000,
                "rounds must be in [1, 1e6] and delay_us in [0, 1e6]");
        // Per round: how many threads had arrived, and the sum of the work items they took.
        std::vector<std::atomic<int64_t>> arrived(static_cast<size_t>(rounds));
        std::vector<std::atomic<int64_t>> taken(static_cast<size_t>(rounds));
        std::atomic<int64_t> failures{0};
        ReleaseGil release;
        in_team(threads, [&](const Parallel& par) {
          for (int r = 0; r < rounds; ++r) {
            par.run([&](const Share& share) {
              // One thread comes late, by turns: long enough for the others to go to sleep.
              if (share.rank == r % share.size && delay_us > 0) {
                std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
              }
              taken[r] += share.take(1);
              arrived[r] += 1;
            });
            const int64_t n = par.threads();
            if (arrived[r].load() != n || taken[r].load() != n * (n - 1) / 2) failures += 1;
          }
        });
        return failures.load();
      },
      py::arg("threads"), py::arg("rounds"), py::arg("delay_us") = 0,
      "Runs `rounds` operators in one team; one thread arrives delay_us late to each. Returns "
      "how many times a thread left an operator before all had finished it, or the work "
      "counter did not start from 0.");

  m.def(
      "layernorm",
      [](FloatArray x, FloatArray weight, FloatArray bias, float eps, int threads, bool team) {
        require(x.ndim() == 2, "x must be 2-D (rows, n)");
        const int64_t t = x.shape(0), n = x.shape(1);
        require(n >= 1, "rows must not be empty");
        require_shape(weight, "weight", {n});
        require_shape(bias, "bias", {n});
        require(eps > 0.0f, "eps must be positive");
        checked_threads(threads);
        FloatArray out({t, n});
        ReleaseGil release;
        float* o = out.mutable_data();
        with_parallel(threads, team, [&](const Parallel& par) {
          layernorm(o, x.data(), weight.data(), bias.data(), t, n, eps, par);
        });
        return out;
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("eps") = 1e-5f,
      py::arg("threads") = 1, py::arg("team") = false);

  m.def(
      "activation",
      [](FloatArray x, Activation kind, int threads, bool team) {
        require(valid_activation(kind), "unknown activation");
        checked_threads(threads);
        FloatArray out = copy_of(x);
        float* o = out.mutable_data();
        const auto n = static_cast<int64_t>(out.size());
        ReleaseGil release;
        with_parallel(threads, team, [&](const Parallel& par) { activate(o, n, kind, par); });
        return out;
      },
      py::arg("x"), py::arg("kind") = Activation::GeluTanh, py::arg("threads") = 1,
      py::arg("team") = false);

  m.def(
      "attention",
      [](FloatArray q, FloatArray k, FloatArray v, int64_t pos0, float scale, int threads,
         bool team, const std::string& kv_dtype) {
        // q (t, H*D) for positions [pos0, pos0 + t); k, v (H, capacity, D) hold [0, pos0 + t)
        require(q.ndim() == 2 && k.ndim() == 3, "q must be 2-D and k 3-D");
        const int64_t t = q.shape(0), H = k.shape(0), cap = k.shape(1), D = k.shape(2);
        require(t >= 1 && H >= 1 && D >= 1, "empty attention is not supported");
        require_shape(q, "q", {t, H * D});
        require_shape(v, "v", {H, cap, D});
        require(pos0 >= 0 && pos0 <= cap - t, "pos0 + len(q) must be within the cache capacity");
        require(!team || t < kTeamRows,
                "a team runs fewer than " + std::to_string(kTeamRows) + " queries");
        checked_threads(threads);
        const AttentionShape shape{t, pos0, H, D, cap, scale, kv_type_named(kv_dtype)};
        Buffer scratch(attention_scratch(shape, threads));
        FloatArray out({t, H * D});
        float* o = out.mutable_data();
        const CacheCopy keys(k, shape.kv), values(v, shape.kv);
        ReleaseGil release;
        with_parallel(threads, team, [&](const Parallel& par) {
          attention(o, q.data(), H * D, keys.data, values.data, shape, par, scratch.data());
        });
        return out;
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("pos0"), py::arg("scale"),
      py::arg("threads") = 1, py::arg("team") = false, py::arg("kv_dtype") = "float32",
      "kv_dtype 'bfloat16': k and v are rounded to it (to nearest even), as a model's cache "
      "of that type holds them, before attention reads them; 'int8': quantized row by row "
      "(kv_int8_rows).");
  m.def(
      "kv_int8_rows",
      [](FloatArray x) {
        // x (rows, d) -> (q (rows, d) int8 as float, scales (rows,)): an int8 cache's rows
        require(x.ndim() == 2 && x.shape(1) >= 1, "x must be 2-D with at least one column");
        const int64_t rows = x.shape(0), d = x.shape(1);
        FloatArray q({rows, d}), scales({rows});
        std::vector<int8_t> row(static_cast<size_t>(d));
        for (int64_t r = 0; r < rows; ++r) {
          quantize_kv_row(x.data() + r * d, d, row.data(), scales.mutable_data() + r);
          for (int64_t i = 0; i < d; ++i) q.mutable_data()[r * d + i] = row[static_cast<size_t>(i)];
        }
        return py::make_tuple(q, scales);
      },
      py::arg("x"), "The rows of x as an int8 KV cache holds them: (values, scales).");
}

void bind_isa(py::module_& m) {
  m.def("available_isas", &available_isas, "The kernel sets this CPU can run, best last.");
  m.def("init_default_isa", &init_default_isa,
        "Choose the default kernel set now (GPT2CPU_ISA, else the best): ValueError if "
        "GPT2CPU_ISA names a set this CPU cannot run.");
  m.def("check_isa", [](const std::string& name) { kernels_named(name); },
        "ValueError unless this CPU can run the kernel set `name` (or it is \"auto\").");
  m.def("default_isa", []() { return std::string(kernels().name); },
        "The kernel set models use when loaded without an isa.");
  m.def(
      "cpu_features",
      []() {
        py::dict out;
        for (const auto& [name, has] : cpu_features()) out[py::str(name)] = has;
        return out;
      },
      "The CPU features that the kernel sets depend on, and whether this CPU (and OS) has each.");
}

}  // namespace gpt2cpu::bindings
