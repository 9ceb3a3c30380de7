// The `gpt2cpu._core` extension: a thin layer that converts numpy arrays, checks their
// shapes and releases the GIL around compute.
#include "common.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "gpt2cpu's C++ engine";
  gpt2cpu::bindings::bind_model(m);
  gpt2cpu::bindings::bind_sequence(m);
  gpt2cpu::bindings::bind_bpe(m);
  auto sampling = m.def_submodule("sampling", "Sampling's passes over a row of logits");
  gpt2cpu::bindings::bind_sampling(sampling);
  auto kernels = m.def_submodule("kernels", "Single operators, for tests and benchmarks");
  gpt2cpu::bindings::bind_kernels(kernels);
}
