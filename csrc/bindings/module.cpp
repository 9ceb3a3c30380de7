// The `gpt2cpu._core` extension: a thin layer that converts numpy arrays, checks their
// shapes and releases the GIL around compute.
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "common.h"
#include "gpt2cpu/kernel_table.h"
#include "gpt2cpu/parallel.h"

namespace gpt2cpu::bindings {

void warn_if_forked() {
  static bool warned = false;  // guarded by the GIL
  if (warned || !forked_after_threads()) return;
  warned = true;
  if (PyErr_WarnEx(PyExc_RuntimeWarning,
                   "gpt2cpu: this process was forked after the engine had run on several "
                   "threads, and OpenMP cannot start threads in a forked child: it computes on "
                   "one thread (same results, slower). Start worker processes with the "
                   "'spawn' or 'forkserver' method to use every thread.",
                   1) != 0) {
    throw py::error_already_set();
  }
}

IdArray id_array(const py::handle& ids, const std::string& name,
                 const std::function<void(int64_t)>& check_length) {
  const auto a = py::array::ensure(ids);
  if (!a) throw py::type_error(name + " must be an array of integer token ids");
  if (check_length && a.ndim() == 1) check_length(a.shape(0));
  const char kind = a.dtype().kind();
  // numpy makes an empty list float64: with nothing in it, no id is a non-integer.
  const bool empty_list = a.size() == 0 && !py::isinstance<py::array>(ids);
  if (kind != 'i' && kind != 'u' && !empty_list) {
    throw py::type_error(name + " must hold integers, got an array of " +
                         py::str(a.dtype()).cast<std::string>());
  }
  if (kind == 'u' && a.itemsize() == 8) {
    // Cast to int64, these would wrap around to negative ids and be reported as such.
    const auto wide = py::array_t<uint64_t, kArrayFlags>::ensure(a);
    if (!wide) throw py::type_error(name + " could not be read as integers");
    const uint64_t* v = wide.data();
    for (py::ssize_t i = 0; i < wide.size(); ++i) {
      if (v[i] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        throw std::out_of_range(name + "[" + std::to_string(i) + "] = " + std::to_string(v[i]) +
                                " is out of range");
      }
    }
  }
  auto out = IdArray::ensure(a);
  if (!out) throw py::type_error(name + " could not be read as integers");
  return out;
}

}  // namespace gpt2cpu::bindings

PYBIND11_MODULE(_core, m) {
  m.doc() = "gpt2cpu's C++ engine";
  gpt2cpu::bindings::bind_model(m);
  gpt2cpu::bindings::bind_sequence(m);
  gpt2cpu::bindings::bind_bpe(m);
  auto sampling = m.def_submodule("sampling", "Sampling's passes over a row of logits");
  gpt2cpu::bindings::bind_sampling(sampling);
  gpt2cpu::bindings::bind_isa(m);
  auto testing = m.def_submodule("testing", "Single operators and hooks, for tests and benchmarks");
  gpt2cpu::bindings::bind_testing(testing);
  m.def("forked_after_threads", &gpt2cpu::forked_after_threads,
        "Whether this process was forked after the engine ran on several threads, so that it "
        "computes on one.");
  // A bad GPT2CPU_ISA is reported as a ValueError by the first call that needs the default
  // set (the Python layer calls init_default_isa() as it loads); an exception here would be
  // an ImportError.
  try {
    gpt2cpu::init_default_isa();
  } catch (const std::invalid_argument&) {
  }
}
