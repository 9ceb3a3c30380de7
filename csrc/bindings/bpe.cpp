// The tokenizer's merge loop for python/gpt2cpu/bpe.py: Python hands over the pieces its
// pre-tokenizer found and gets every id back from one call, with a cache of pieces seen
// before. The GIL stays held: the pieces are Python strings, read in place, and the cache
// is not thread-safe.
#include "gpt2cpu/bpe.h"

#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace gpt2cpu::bindings {

namespace {

struct CachedMerger {
  BytePairMerger merger;
  PieceCache cache;
};

// The UTF-8 of a str, which CPython keeps with the object (ASCII strings are their own).
std::string_view utf8_of(py::handle text) {
  if (!PyUnicode_Check(text.ptr())) throw py::type_error("pieces must be str");
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
  if (data == nullptr) throw py::error_already_set();  // e.g. a lone surrogate
  return {data, static_cast<size_t>(size)};
}

}  // namespace

void bind_bpe(py::module_& m) {
  py::class_<CachedMerger>(m, "BytePairMerger",
                           "GPT-2 byte-pair merging over token ids, with a per-piece cache.")
      .def(py::init([](const std::vector<int32_t>& byte_ids,
                       const std::vector<std::array<int32_t, 3>>& merges,
                       std::unordered_map<std::string, int32_t> whole_tokens, size_t cache_entries,
                       size_t cache_piece_bytes) {
             require(byte_ids.size() == 256, "byte_ids must have 256 entries");
             std::array<int32_t, 256> bytes{};
             std::copy(byte_ids.begin(), byte_ids.end(), bytes.begin());
             std::vector<Merge> list;
             list.reserve(merges.size());
             for (const auto& m : merges) list.push_back(Merge{m[0], m[1], m[2]});
             return CachedMerger{BytePairMerger(bytes, list, std::move(whole_tokens)),
                                 PieceCache(cache_entries, cache_piece_bytes)};
           }),
           py::arg("byte_ids"), py::arg("merges"), py::arg("whole_tokens"),
           py::arg("cache_entries"), py::arg("cache_piece_bytes"))
      .def(
          "merge",
          [](const CachedMerger& self, const py::bytes& piece) {
            std::vector<int32_t> out;
            self.merger.merge(static_cast<std::string_view>(piece), out);
            return out;
          },
          py::arg("piece"), "The ids of one piece's bytes, without the cache.")
      .def(
          "encode_pieces",
          [](CachedMerger& self, const py::list& pieces) {
            std::vector<int32_t> out;
            out.reserve(pieces.size() + pieces.size() / 4);
            for (const py::handle piece : pieces) {
              self.cache.encode(self.merger, utf8_of(piece), out);
            }
            return out;
          },
          py::arg("pieces"), "The ids of a list of pieces (str), one after another.")
      .def("clear_cache", [](CachedMerger& self) { self.cache.clear(); });
}

}  // namespace gpt2cpu::bindings
