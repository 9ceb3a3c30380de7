// The tokenizer's merge loop for python/gpt2cpu/bpe.py: Python hands over the pieces its
// pre-tokenizer found and gets every id back from one call, with a cache of pieces seen
// before. The GIL stays held: the pieces are Python strings, read in place, and the cache
// is not thread-safe.
//
// Also compile_byte_level, vocabulary.py's tables made in one pass over a well-formed
// vocabulary: done per token in Python they were most of a model's load time.
#include "gpt2cpu/bpe.h"

#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
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

// The id a vocabulary dict gives a token (borrowed), nullptr when it has none. An error
// (never expected for str keys) propagates.
PyObject* lookup(PyObject* vocab, PyObject* token) {
  PyObject* found = PyDict_GetItemWithError(vocab, token);
  if (found == nullptr && PyErr_Occurred()) throw py::error_already_set();
  return found;
}

// A token id from a vocabulary value, or -1 when it is not an int in [0, 2^31 - 1].
int64_t id_of(PyObject* value) {
  if (!PyLong_CheckExact(value)) return -1;
  int overflow = 0;
  const long long id = PyLong_AsLongLongAndOverflow(value, &overflow);
  if (overflow != 0 || id < 0 || id > INT32_MAX) return -1;
  return id;
}

// The bytes a token spells in the byte-level alphabet (char_to_byte maps a code point to its
// byte, -1 outside the alphabet), or its UTF-8 when it has a character outside it: what
// byte_level.spelled_bytes and vocabulary.py make of it. nullptr for a token UTF-8 cannot
// encode (a lone surrogate), with the error cleared: the caller gives up.
py::object spelled(PyObject* token, const std::vector<int16_t>& char_to_byte) {
#if PY_VERSION_HEX < 0x030C0000
  if (PyUnicode_READY(token) != 0) throw py::error_already_set();
#endif
  const Py_ssize_t length = PyUnicode_GET_LENGTH(token);
  const int kind = PyUnicode_KIND(token);
  const void* data = PyUnicode_DATA(token);
  bool in_alphabet = true;
  for (Py_ssize_t i = 0; i < length && in_alphabet; ++i) {
    const Py_UCS4 c = PyUnicode_READ(kind, data, i);
    in_alphabet = c < char_to_byte.size() && char_to_byte[c] >= 0;
  }
  if (!in_alphabet) {
    PyObject* utf8 = PyUnicode_AsUTF8String(token);
    if (utf8 == nullptr) PyErr_Clear();
    return py::reinterpret_steal<py::object>(utf8);
  }
  auto out = py::reinterpret_steal<py::object>(PyBytes_FromStringAndSize(nullptr, length));
  if (!out) throw py::error_already_set();
  char* bytes = PyBytes_AS_STRING(out.ptr());
  for (Py_ssize_t i = 0; i < length; ++i) {
    bytes[i] = static_cast<char>(char_to_byte[PyUnicode_READ(kind, data, i)]);
  }
  return out;
}

// vocabulary.compile_vocabulary's tables for a vocabulary as tokenizer files hold one: str
// tokens with distinct ids, dense enough to index, every byte a token and every merge's
// parts and result tokens. Returns (merger, byte_ids, id_to_bytes, id_to_token, unreachable)
// where unreachable lists, ascending, the ids neither a byte nor a merge makes; None for
// anything else, and Python's own pass then says what is wrong with it.
py::object compile_byte_level(const py::dict& vocab, const py::list& merges,
                              const py::tuple& alphabet, bool ignore_merges, size_t cache_entries,
                              size_t cache_piece_bytes) {
  const py::object none = py::none();
  require(alphabet.size() == 256, "the alphabet must have 256 characters");
  std::vector<int16_t> char_to_byte;
  for (size_t b = 0; b < 256; ++b) {
    PyObject* c = PyTuple_GET_ITEM(alphabet.ptr(), static_cast<Py_ssize_t>(b));
    // Exact strings: a subclass's __hash__ would run Python code in the lookups below,
    // which could change the vocabulary after its ids were checked.
    require(PyUnicode_CheckExact(c) && PyUnicode_GET_LENGTH(c) == 1,
            "the alphabet must be 256 one-character strings");
    const Py_UCS4 code = PyUnicode_ReadChar(c, 0);
    require(code < 0x10000, "the alphabet must lie in the Basic Multilingual Plane");
    if (code >= char_to_byte.size()) char_to_byte.resize(code + 1, -1);
    require(char_to_byte[code] < 0, "the alphabet must not repeat a character");
    char_to_byte[code] = static_cast<int16_t>(b);
  }

  // Tokens by id, in the dict's order; ids must be dense enough that a table indexed by
  // them stays about the size of the vocabulary.
  const auto count = static_cast<size_t>(PyDict_GET_SIZE(vocab.ptr()));
  std::vector<std::pair<PyObject*, PyObject*>> entries;  // borrowed (token, id object)
  std::vector<int32_t> ids;
  entries.reserve(count);
  ids.reserve(count);
  int64_t max_id = -1;
  Py_ssize_t position = 0;
  PyObject* token = nullptr;
  PyObject* value = nullptr;
  while (PyDict_Next(vocab.ptr(), &position, &token, &value)) {
    const int64_t id = id_of(value);
    if (id < 0 || !PyUnicode_CheckExact(token)) return none;
    entries.emplace_back(token, value);
    ids.push_back(static_cast<int32_t>(id));
    max_id = std::max(max_id, id);
  }
  if (max_id >= static_cast<int64_t>(2 * count + 1024)) return none;
  const auto slots = static_cast<size_t>(max_id + 1);
  std::vector<uint8_t> present(slots, 0), reachable(slots, 0);
  for (const int32_t id : ids) {
    if (present[id]) return none;  // two tokens share an id
    present[id] = 1;
  }

  py::dict id_to_bytes, id_to_token;
  std::unordered_map<std::string, int32_t> whole_tokens;
  for (size_t i = 0; i < entries.size(); ++i) {
    const py::object bytes = spelled(entries[i].first, char_to_byte);
    if (!bytes) return none;
    if (PyDict_SetItem(id_to_bytes.ptr(), entries[i].second, bytes.ptr()) != 0 ||
        PyDict_SetItem(id_to_token.ptr(), entries[i].second, entries[i].first) != 0) {
      throw py::error_already_set();
    }
    if (ignore_merges) {
      whole_tokens[std::string(PyBytes_AS_STRING(bytes.ptr()),
                               static_cast<size_t>(PyBytes_GET_SIZE(bytes.ptr())))] = ids[i];
    }
  }

  std::array<int32_t, 256> byte_ids{};
  py::list byte_id_list(256);
  for (size_t b = 0; b < 256; ++b) {
    PyObject* found =
        lookup(vocab.ptr(), PyTuple_GET_ITEM(alphabet.ptr(), static_cast<Py_ssize_t>(b)));
    // Checked again where used: every id indexes the tables sized by the first pass.
    const int64_t id = found == nullptr ? -1 : id_of(found);
    if (id < 0 || id >= static_cast<int64_t>(slots)) return none;
    byte_ids[b] = static_cast<int32_t>(id);
    reachable[byte_ids[b]] = 1;
    byte_id_list[b] = py::reinterpret_borrow<py::object>(found);
  }

  std::vector<Merge> merge_ids;
  merge_ids.reserve(merges.size());
  for (const py::handle item : merges) {
    PyObject* pair = item.ptr();
    PyObject* left = nullptr;
    PyObject* right = nullptr;
    if (PyTuple_CheckExact(pair) && PyTuple_GET_SIZE(pair) == 2) {
      left = PyTuple_GET_ITEM(pair, 0);
      right = PyTuple_GET_ITEM(pair, 1);
    } else if (PyList_CheckExact(pair) && PyList_GET_SIZE(pair) == 2) {
      left = PyList_GET_ITEM(pair, 0);
      right = PyList_GET_ITEM(pair, 1);
    } else {
      return none;
    }
    if (!PyUnicode_CheckExact(left) || !PyUnicode_CheckExact(right)) return none;
    PyObject* left_id = lookup(vocab.ptr(), left);
    PyObject* right_id = lookup(vocab.ptr(), right);
    if (left_id == nullptr || right_id == nullptr) return none;
    const auto joined = py::reinterpret_steal<py::object>(PyUnicode_Concat(left, right));
    if (!joined) throw py::error_already_set();
    PyObject* merged_id = lookup(vocab.ptr(), joined.ptr());
    if (merged_id == nullptr) return none;
    const int64_t l = id_of(left_id), r = id_of(right_id), merged = id_of(merged_id);
    const auto fits = [&](int64_t id) { return id >= 0 && id < static_cast<int64_t>(slots); };
    if (!fits(l) || !fits(r) || !fits(merged)) return none;
    const Merge m{static_cast<int32_t>(l), static_cast<int32_t>(r), static_cast<int32_t>(merged)};
    reachable[m.merged] = 1;
    merge_ids.push_back(m);
  }

  py::list unreachable;
  for (size_t id = 0; id < slots; ++id) {
    if (present[id] && !reachable[id]) unreachable.append(py::int_(id));
  }
  CachedMerger merger{BytePairMerger(byte_ids, merge_ids, std::move(whole_tokens)),
                      PieceCache(cache_entries, cache_piece_bytes)};
  return py::make_tuple(py::cast(std::move(merger)), byte_id_list, id_to_bytes, id_to_token,
                        unreachable);
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
  m.def("compile_byte_level", &compile_byte_level, py::arg("vocab"), py::arg("merges"),
        py::arg("alphabet"), py::arg("ignore_merges"), py::arg("cache_entries"),
        py::arg("cache_piece_bytes"),
        "A well-formed byte-level BPE vocabulary's tables and merger in one pass: "
        "(merger, byte_ids, id_to_bytes, id_to_token, unreachable ids), or None.");
}

}  // namespace gpt2cpu::bindings
