#include "gpt2cpu/model.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common.h"

namespace gpt2cpu::bindings {

namespace {

// One field of a load_files item, cast on its own: a bad one (a dimension past int64, say)
// then names itself and its tensor, where pybind11 would say only "Unable to cast".
template <typename T>
T item_field(const py::tuple& item, size_t k, const std::string& at, const char* what) {
  try {
    return item[k].cast<T>();
  } catch (const py::cast_error&) {
    std::string got = py::repr(item[k]);
    if (got.size() > 60) got = got.substr(0, 57) + "...";
    throw py::type_error(at + ": " + what + ", got " + got);
  }
}

}  // namespace

void bind_model(py::module_& m) {
  py::enum_<Activation>(m, "Activation")
      .value("gelu_tanh", Activation::GeluTanh)
      .value("gelu_erf", Activation::GeluErf)
      .value("relu", Activation::Relu);

  py::class_<Config>(m, "Config")
      .def(py::init<>())
      .def_readwrite("n_layer", &Config::n_layer)
      .def_readwrite("n_head", &Config::n_head)
      .def_readwrite("n_embd", &Config::n_embd)
      .def_readwrite("n_positions", &Config::n_positions)
      .def_readwrite("vocab_size", &Config::vocab_size)
      .def_readwrite("n_inner", &Config::n_inner)
      .def_readwrite("layer_norm_epsilon", &Config::layer_norm_epsilon)
      .def_readwrite("activation", &Config::activation)
      .def_readwrite("scale_attn_weights", &Config::scale_attn_weights)
      .def_readwrite("scale_attn_by_inverse_layer_idx", &Config::scale_attn_by_inverse_layer_idx)
      .def_readwrite("tie_word_embeddings", &Config::tie_word_embeddings)
      .def("validate", &Config::validate);

  // An OSError: a file's trouble, which the loader reports as the checkpoint's.
  py::register_exception<FileReadError>(m, "FileReadError", PyExc_OSError);

  py::list dtypes;
  for (const auto& row : kWeightTypeInfo) dtypes.append(row.name);
  m.attr("DTYPES") = py::tuple(dtypes);
  py::list kv_dtypes;
  for (const auto& row : kKvTypeInfo) kv_dtypes.append(row.name);
  m.attr("KV_DTYPES") = py::tuple(kv_dtypes);

  m.def(
      "tensor_specs",
      [](const Config& config) {
        py::list out;
        for (const auto& spec : Weights::specs_for(config)) {
          out.append(py::make_tuple(spec.name, py::tuple(py::cast(spec.shape))));
        }
        return out;
      },
      py::arg("config"),
      "[(name, shape)] of the tensors a checkpoint for this config must provide, "
      "without the 'transformer.' prefix. Validates the config; allocates nothing.");

  py::class_<Model, std::shared_ptr<Model>>(m, "Model")
      .def(py::init([](const Config& config, int threads, const std::string& dtype,
                       std::optional<std::string> isa, const std::string& kv_dtype) {
             return std::make_shared<Model>(config, threads, weight_type_named(dtype),
                                            isa ? kernels_named(*isa) : kernels(),
                                            kv_type_named(kv_dtype));
           }),
           py::arg("config"), py::arg("threads"), py::arg("dtype") = "float32",
           py::arg("isa") = py::none(), py::arg("kv_dtype") = "float32",
           "dtype: what the weight matrices are stored as (DTYPES). isa: the kernel set (see "
           "available_isas()); None: the process's default. kv_dtype: what every sequence's "
           "KV cache holds (KV_DTYPES).")
      .def_property_readonly("isa", [](const Model& self) { return std::string(self.kernels().name); })
      .def(
          "kernel_info",
          [](const Model& self) {
            const KernelTable& kt = self.kernels();
            py::dict info;
            info["isa"] = std::string(kt.name);
            py::list features;
            std::string all = kt.features, word;
            for (char ch : all + " ") {
              if (ch != ' ') {
                word += ch;
              } else if (!word.empty()) {
                features.append(word);
                word.clear();
              }
            }
            info["features"] = features;
            info["gemm_rows"] = kt.gemm_rows;
            return info;
          },
          "The kernel set the model runs: its name, the CPU features it uses, its GEMM tile rows.")
      .def(
          "load_tensor",
          [](Model& self, const std::string& name, FloatArray array) {
            // Checked here too so that the usual mistake is a ValueError; Model checks again
            // under its lock against a finalize() racing from another thread.
            require(!self.ready(), "the model is already loaded; tensors cannot be replaced");
            const auto shape = shape_of(array);
            warn_if_forked();
            ReleaseGil release;
            self.load_tensor(name, array.data(), shape);
          },
          py::arg("name"), py::arg("array"))
      .def(
          "load_files",
          [](Model& self, const py::list& items) {
            require(!self.ready(), "the model is already loaded; tensors cannot be replaced");
            std::vector<FileTensor> tensors;
            for (size_t i = 0; i < items.size(); ++i) {
              const auto t = items[i].cast<py::tuple>();
              require(t.size() == 6, "each tensor is (name, shape, fd, offset, dtype, label)");
              std::string at = "tensors[" + std::to_string(i) + "]";
              auto name = item_field<std::string>(t, 0, at, "the name must be a str");
              at += " ('" + name + "')";
              auto shape = item_field<std::vector<int64_t>>(
                  t, 1, at, "the shape must be a sequence of integers in the int64 range");
              const int fd = item_field<int>(t, 2, at, "the fd must be an int");
              const auto offset =
                  item_field<int64_t>(t, 3, at, "the offset must be an integer in the int64 range");
              const auto dtype = item_field<std::string>(t, 4, at, "the dtype must be a str");
              require(dtype == "F32" || dtype == "F16" || dtype == "BF16",
                      "dtype must be 'F32', 'F16' or 'BF16', got '" + dtype + "'");
              tensors.push_back(FileTensor{
                  std::move(name), std::move(shape), fd, offset,
                  dtype == "F32" ? SourceType::F32
                                 : dtype == "F16" ? SourceType::F16 : SourceType::BF16,
                  item_field<std::string>(t, 5, at, "the label must be a str")});
              require(tensors.back().offset >= 0, "offsets must not be negative");
            }
            warn_if_forked();
            ReleaseGil release;
            self.load_files(tensors);
          },
          py::arg("tensors"),
          "Reads [(name, shape, fd, offset, dtype, label)] from open files (dtype: 'F32', "
          "'F16' or 'BF16', little-endian) and stores them, on the model's threads with the "
          "GIL released. Raises ValueError for an unknown name or a wrong shape before "
          "reading anything, FileReadError (label first) when a file ends early or fails.")
      .def("finalize", &Model::finalize, py::call_guard<ReleaseGil>())
      .def_property_readonly("ready", &Model::ready)
      .def_property("threads", &Model::threads, &Model::set_threads)
      .def_property_readonly("weight_bytes",
                             [](const Model& self) { return self.weights().bytes(); })
      .def_property_readonly(
          "dtype", [](const Model& self) { return std::string(info(self.weights().type()).name); })
      .def_property_readonly(
          "kv_dtype", [](const Model& self) { return std::string(info(self.kv_type()).name); })
      .def_property_readonly("kv_bytes_per_position", &Model::kv_bytes_per_position,
                             "Bytes a sequence's KV cache takes per position.")
      .def_property_readonly("config", [](const Model& self) { return self.config(); });
}

}  // namespace gpt2cpu::bindings
