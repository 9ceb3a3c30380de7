#pragma once
// Shared helpers for the bindings: array types and argument checks. The C++ core checks
// its own bounds; these checks turn malformed arrays into ValueError before any pointer
// arithmetic happens.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <functional>
#include <string>
#include <vector>

namespace gpt2cpu::bindings {

namespace py = pybind11;

// forcecast: a float64 or non-contiguous array is converted into a fresh copy, never
// written through, so nothing the caller passed is modified. aligned: numpy can hand over
// views at any byte offset (np.frombuffer over a file), and the kernels' vectorised loops
// assume element alignment, so such arrays are copied too.
constexpr int kArrayFlags =
    py::array::c_style | py::array::forcecast | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
using FloatArray = py::array_t<float, kArrayFlags>;
using IdArray = py::array_t<int64_t, kArrayFlags>;

// Token ids as an IdArray, from an array of any integer dtype or what numpy makes one of.
// IdArray's own conversion is forcecast's, which would truncate floats and take bools,
// strings and complex numbers; those are a TypeError here. name prefixes the messages.
// check_length, if given, sees a one-dimensional array's length before it is copied: a
// broadcast view of 8 bytes can stand for GBs of ids.
IdArray id_array(const py::handle& ids, const std::string& name,
                 const std::function<void(int64_t)>& check_length = nullptr);

inline void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

inline std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

inline void require_shape(const py::array& a, const char* name, std::vector<int64_t> expected) {
  const auto shape = shape_of(a);
  std::string want = "(", got = "(";
  for (size_t i = 0; i < expected.size(); ++i) want += (i ? ", " : "") + std::to_string(expected[i]);
  for (size_t i = 0; i < shape.size(); ++i) got += (i ? ", " : "") + std::to_string(shape[i]);
  require(shape == expected, std::string(name) + " must have shape " + want + "), got " + got + ")");
}

// The GIL released around compute, as py::gil_scoped_release does, but with a destructor
// that may throw. Python ends a daemon thread that asks for the GIL back while the
// interpreter finalizes with pthread_exit, a forced unwind; through gil_scoped_release's
// destructor (noexcept, as destructors are) that called std::terminate and aborted the
// process at exit. Through this one the unwind goes on, pybind11's dispatcher rethrows it,
// and the thread ends as a C extension's would.
class ReleaseGil {
 public:
  ReleaseGil() : state_(PyEval_SaveThread()) {}
  ~ReleaseGil() noexcept(false) { PyEval_RestoreThread(state_); }
  ReleaseGil(const ReleaseGil&) = delete;
  ReleaseGil& operator=(const ReleaseGil&) = delete;

 private:
  PyThreadState* state_;
};

// Warns, once per process, that a forked child computes on one thread (parallel.h says
// why). Call with the GIL held, before compute; raises if warnings are errors.
void warn_if_forked();

void bind_model(py::module_& m);
void bind_sequence(py::module_& m);
void bind_testing(py::module_& m);
void bind_isa(py::module_& m);
void bind_bpe(py::module_& m);
void bind_sampling(py::module_& m);

}  // namespace gpt2cpu::bindings
