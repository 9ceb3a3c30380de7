// The `gpt2cpu._core` extension: a thin layer that converts numpy arrays, checks their
// shapes and releases the GIL around compute.
#include <stdexcept>

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
