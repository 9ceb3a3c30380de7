#include "gpt2cpu/sequence.h"
#include "gpt2cpu/step.h"

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"

namespace gpt2cpu::bindings {

namespace {

// n new tokens must fit in seq's capacity; prefix names the input (a step's "inputs[i]: ").
void check_room(const std::string& prefix, int64_t n, const Sequence& seq) {
  if (n > seq.capacity()) {
    throw std::out_of_range(prefix + "cannot append " + std::to_string(n) +
                            " tokens to a sequence of capacity " + std::to_string(seq.capacity()));
  }
}

}  // namespace

void bind_sequence(py::module_& m) {
  py::class_<Sequence>(m, "Sequence")
      .def(py::init([](std::shared_ptr<Model> model, int64_t capacity) {
             return std::make_unique<Sequence>(std::move(model), capacity);
           }),
           py::arg("model"), py::arg("capacity"))
      .def(
          "append",
          [](Sequence& self, const py::object& id_list, int64_t n_logits) {
            // Before the ids are copied and the logits allocated: their sizes are bounded
            // only by this check.
            const IdArray ids =
                id_array(id_list, "ids", [&](int64_t n) { check_room("", n, self); });
            require(ids.ndim() == 1, "ids must be one-dimensional");
            const int64_t n = ids.shape(0);
            require(n_logits >= 0 && n_logits <= n, "n_logits must be in [0, len(ids)]");
            // Another Python thread may write to the caller's array once the GIL is released;
            // a private copy means the ids checked are the ids used.
            std::vector<int64_t> local(static_cast<size_t>(n));
            if (n > 0) std::memcpy(local.data(), ids.data(), local.size() * sizeof(int64_t));
            warn_if_forked();
            const int64_t vocab = self.vocab_size();
            py::array_t<float> logits({n_logits, vocab});
            float* out = logits.mutable_data();
            {
              ReleaseGil release;
              self.append(local.data(), n, out, n_logits);
            }
            return logits;
          },
          py::arg("ids"), py::arg("n_logits") = 1,
          "Run ids through the model; returns the logits of the last n_logits positions.")
      .def("truncate", &Sequence::truncate, py::arg("length"))
      .def("reserve", &Sequence::reserve_room, py::arg("positions"), py::call_guard<ReleaseGil>(),
           "Memory for this many tokens now, rather than as they come.")
      .def("fork", &Sequence::fork, py::call_guard<ReleaseGil>(),
           "A new sequence holding a copy of this one's tokens' keys and values.")
      .def_property_readonly("length", &Sequence::length)
      .def_property_readonly("capacity", &Sequence::capacity)
      .def_property_readonly("allocated", &Sequence::allocated,
                             "Positions the KV cache has memory for now.")
      .def_property_readonly("cache_bytes", &Sequence::cache_bytes,
                             "Bytes the KV cache takes now: allocated positions of the "
                             "model's kv_dtype.");

  m.def(
      "step",
      [](std::shared_ptr<Model> model, std::vector<py::object> sequences,
         std::vector<py::object> id_lists, std::vector<int64_t> n_out, const std::string& output,
         int64_t layer, bool hidden_states, bool argmax) -> py::tuple {
        require(model != nullptr, "model must not be None");
        require(id_lists.size() == sequences.size() && n_out.size() == sequences.size(),
                "sequences, ids and n_out must have the same length");
        StepRequest request;
        if (output == "logits") {
          request.output = StepOutput::Logits;
        } else if (output == "hidden") {
          request.output = StepOutput::Hidden;
          request.layer = layer;
        } else if (output == "all_hidden") {
          request.output = StepOutput::AllHidden;
        } else {
          throw std::invalid_argument("output must be 'logits', 'hidden' or 'all_hidden', got '" +
                                      output + "'");
        }
        const Config& c = model->config();
        const int64_t width = step_output_width(c, request);
        // Private copies: another Python thread may write to the caller's arrays once the GIL
        // is released, and the ids checked must be the ids used.
        std::vector<std::vector<int64_t>> local(sequences.size());
        std::vector<StepInput> inputs(sequences.size());
        int64_t out_rows = 0;
        for (size_t i = 0; i < sequences.size(); ++i) {
          const std::string name = "inputs[" + std::to_string(i) + "]: ";
          require(!sequences[i].is_none(), name + "sequence must not be None");
          if (!py::isinstance<Sequence>(sequences[i])) {
            throw py::type_error(name + "sequence must be a Sequence, got " +
                                 Py_TYPE(sequences[i].ptr())->tp_name);
          }
          // A pointer only: `sequences` holds the references that keep it alive, past the
          // caller's list being emptied by another thread while the GIL is released.
          Sequence* seq = sequences[i].cast<Sequence*>();
          // Before the ids are copied and the output allocated: their sizes are bounded
          // only by this check.
          const IdArray ids = id_array(id_lists[i], name + "ids",
                                       [&](int64_t n) { check_room(name, n, *seq); });
          require(ids.ndim() == 1, name + "ids must be one-dimensional");
          const int64_t n = ids.shape(0);
          require(n_out[i] >= 0 && n_out[i] <= n, name + "n_out must be in [0, len(ids)]");
          local[i].assign(ids.data(), ids.data() + n);
          inputs[i] = StepInput{seq, local[i].data(), n, n_out[i]};
          out_rows += n_out[i];
        }
        std::vector<py::ssize_t> shape{out_rows, width};
        if (request.output == StepOutput::AllHidden) shape = {out_rows, c.n_layer + 1, c.n_embd};
        py::array_t<float> out(shape);
        float* data = out.mutable_data();
        require(!hidden_states || request.output == StepOutput::Logits,
                "hidden_states=True goes with output='logits'");
        require(!argmax || request.output == StepOutput::Logits,
                "argmax=True goes with output='logits'");
        py::object hidden = py::none(), best = py::none();
        if (hidden_states) {
          py::array_t<float> all(std::vector<py::ssize_t>{out_rows, c.n_layer + 1, c.n_embd});
          request.hidden = all.mutable_data();
          hidden = all;
        }
        if (argmax) {
          py::array_t<int64_t> rows(std::vector<py::ssize_t>{out_rows});
          request.argmax = rows.mutable_data();
          best = rows;
        }
        {
          ReleaseGil release;
          run_step(*model, inputs, request, data);
        }
        return py::make_tuple(out, hidden, best);
      },
      py::arg("model"), py::arg("sequences"), py::arg("ids"), py::arg("n_out"),
      py::arg("output") = "logits", py::arg("layer") = 0, py::arg("hidden_states") = false,
      py::arg("argmax") = false,
      "One forward step over several sequences: each runs its ids. Returns (outputs, hidden, "
      "argmax): the outputs of each one's last n_out positions, one sequence after the other; "
      "with hidden_states=True every hidden state of those positions (else None); with "
      "argmax=True each logits row's argmax, numpy's (else None).");
}

}  // namespace gpt2cpu::bindings
