// The `gpt2cpu._core` extension: a thin layer that converts numpy arrays, checks their
// shapes and releases the GIL around compute.
#include <stdexcept>

#include "common.h"
#include "gpt2cpu/kernel_table.h"

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
  // A bad GPT2CPU_ISA is reported as a ValueError by the first call that needs the default
  // set (the Python layer calls init_default_isa() as it loads); an exception here would be
  // an ImportError.
  try {
    gpt2cpu::init_default_isa();
  } catch (const std::invalid_argument&) {
  }
}
