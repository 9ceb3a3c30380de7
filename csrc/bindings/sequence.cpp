#include "gpt2cpu/sequence.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common.h"

namespace gpt2cpu::bindings {

void bind_sequence(py::module_& m) {
  py::class_<Sequence>(m, "Sequence")
      .def(py::init([](std::shared_ptr<Model> model, int64_t capacity) {
             return std::make_unique<Sequence>(std::move(model), capacity);
           }),
           py::arg("model"), py::arg("capacity"))
      .def(
          "append",
          [](Sequence& self, IdArray ids, int64_t n_logits) {
            require(ids.ndim() == 1, "ids must be one-dimensional");
            const int64_t n = ids.shape(0);
            require(n_logits >= 0 && n_logits <= n, "n_logits must be in [0, len(ids)]");
            // Before the logits are allocated: their size is bounded only by this check.
            if (n > self.capacity()) {
              throw std::out_of_range("cannot append " + std::to_string(n) +
                                      " tokens to a sequence of capacity " +
                                      std::to_string(self.capacity()));
            }
            // Another Python thread may write to the caller's array once the GIL is released;
            // a private copy means the ids checked are the ids used.
            std::vector<int64_t> local(static_cast<size_t>(n));
            if (n > 0) std::memcpy(local.data(), ids.data(), local.size() * sizeof(int64_t));
            warn_if_forked();
            const int64_t vocab = self.vocab_size();
            py::array_t<float> logits({n_logits, vocab});
            float* out = logits.mutable_data();
            {
              py::gil_scoped_release release;
              self.append(local.data(), n, out, n_logits);
            }
            return logits;
          },
          py::arg("ids"), py::arg("n_logits") = 1,
          "Run ids through the model; returns the logits of the last n_logits positions.")
      .def("truncate", &Sequence::truncate, py::arg("length"))
      .def_property_readonly("length", &Sequence::length)
      .def_property_readonly("capacity", &Sequence::capacity);
}

}  // namespace gpt2cpu::bindings
