// Weights::load_files: a checkpoint's tensors read from their files and stored in one
// parallel region. The work is cut into bands of a few hundred kilobytes (rows of a
// (k, n) matrix, panels of an (n, k) one, runs of a vector), taken in file order by
// whichever thread is free: reading the file out of the page cache is as much of a load as
// encoding it, so both are spread over the threads, and a band goes from the file to its
// packed form through buffers that stay in cache.
#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>

#include "gpt2cpu/kernel_table.h"
#include "gpt2cpu/parallel.h"
#include "gpt2cpu/weights.h"

namespace gpt2cpu {

namespace {

// What one band reads: big enough that a pread's cost is nothing beside its copy, small
// enough that the band and its float32 form stay in L2.
constexpr int64_t kBandBytes = 256 << 10;

int64_t element_bytes(SourceType t) { return t == SourceType::F32 ? 4 : 2; }

// Bytes read: fewer than size only where the file ends; -errno when a read fails.
int64_t read_at(int fd, void* buf, int64_t size, int64_t offset) {
  int64_t done = 0;
  while (done < size) {
    const ssize_t got = pread(fd, static_cast<char*>(buf) + done,
                              static_cast<size_t>(size - done), offset + done);
    if (got < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (got == 0) break;
    done += got;
  }
  return done;
}

void widen(SourceType t, const void* src, float* dst, int64_t n) {
  const uint16_t* h = static_cast<const uint16_t*>(src);
  if (t == SourceType::BF16) {
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(h[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_float(h[i]);
  }
}

// One band: elements of a plain tensor, panels of an (n, k) matrix, rows of a (k, n) one.
struct Band {
  size_t tensor;
  int64_t first, count;
};

struct Failure {
  size_t band = std::numeric_limits<size_t>::max();
  int64_t at = 0;  // the file offset the failed read started at
  int error = 0;   // errno, or 0: the file ended
};

}  // namespace

void Weights::load_files(const std::vector<FileTensor>& tensors, int threads,
                         const KernelTable& kt) {
  std::vector<size_t> index;
  for (const auto& t : tensors) {
    index.push_back(checked_index(t.name, t.shape));
    // The shape is the spec's now, its bytes bounded by the config's checks; the offset is
    // the caller's, and the reads below add the two.
    int64_t bytes = element_bytes(t.dtype);
    for (int64_t d : t.shape) bytes *= d;
    if (t.offset < 0 || t.offset > std::numeric_limits<int64_t>::max() - bytes) {
      throw std::invalid_argument(t.label + ": offset " + std::to_string(t.offset) +
                                  " plus the tensor's " + std::to_string(bytes) +
                                  " bytes overflows a file offset");
    }
  }

  // The bands, and the most bytes of file, floats widened and floats of panel one takes.
  std::vector<Band> bands;
  int64_t most_read = 0, most_wide = 0, most_panel = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const FileTensor& t = tensors[i];
    const TensorSpec& spec = specs_[index[i]];
    const int64_t es = element_bytes(t.dtype);
    const bool wide = t.dtype != SourceType::F32;
    int64_t total = 0, per = 0, unit = 0;  // bands of `per` units of `unit` elements
    if (spec.layout == TensorLayout::Plain) {
      total = 1;
      for (int64_t d : spec.shape) total *= d;
      unit = 1;
      per = kBandBytes / 4;
    } else if (spec.layout == TensorLayout::PackNByK) {
      total = spec.packed->panels();
      unit = kPanel * spec.packed->k;
      per = std::max<int64_t>(1, kBandBytes / (unit * 4));
      most_panel = std::max(most_panel, unit);
    } else {
      // Whole scale groups, and an even number of rows: 16-bit types' bands then start on
      // 64-byte lines, so that no two threads write one.
      const int64_t g = std::max<int64_t>(spec.packed->group_rows(), kDotRows);
      total = spec.packed->k;
      unit = spec.packed->n;
      per = std::max<int64_t>(1, kBandBytes / (unit * 4 * g)) * g;
      most_panel = std::max(most_panel, per * kPanel);
    }
    const int64_t per_elements = spec.layout == TensorLayout::PackNByK
                                     ? std::min(per * kPanel, spec.shape[0]) * spec.shape[1]
                                     : std::min(per, total) * unit;
    most_read = std::max(most_read, per_elements * es);
    if (wide) most_wide = std::max(most_wide, per_elements);
    for (int64_t first = 0; first < total; first += per) {
      bands.push_back({i, first, std::min(per, total - first)});
    }
  }
  if (bands.empty()) return;

  threads = std::min<int64_t>(usable_threads(threads), static_cast<int64_t>(bands.size()));
  const size_t per_thread = static_cast<size_t>((most_read + 3) / 4 + most_wide + most_panel);
  Buffer scratch(per_thread * static_cast<size_t>(threads));
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex failure_mutex;
  Failure failure;

#pragma omp parallel num_threads(threads)
  {
    float* read_buf = scratch.data() + per_thread * static_cast<size_t>(omp_get_thread_num());
    float* wide_buf = read_buf + (most_read + 3) / 4;
    float* panel_buf = wide_buf + most_wide;
    for (size_t b = next.fetch_add(1); b < bands.size() && !failed.load(std::memory_order_relaxed);
         b = next.fetch_add(1)) {
      const Band& band = bands[b];
      const FileTensor& t = tensors[band.tensor];
      const TensorSpec& spec = specs_[index[band.tensor]];
      const int64_t es = element_bytes(t.dtype);
      // The band's elements as they lie in the file: [start, start + count).
      int64_t start, count;
      if (spec.layout == TensorLayout::Plain) {
        start = band.first;
        count = band.count;
      } else if (spec.layout == TensorLayout::PackNByK) {
        const int64_t k = spec.packed->k, n = spec.packed->n;
        start = band.first * kPanel * k;
        count = std::min(band.count * kPanel, n - band.first * kPanel) * k;
      } else {
        start = band.first * spec.packed->n;
        count = band.count * spec.packed->n;
      }
      // A plain float32 tensor is read straight into place.
      const bool direct = spec.layout == TensorLayout::Plain && t.dtype == SourceType::F32;
      void* into = direct ? static_cast<void*>(spec.dest + start) : static_cast<void*>(read_buf);
      const int64_t at = t.offset + start * es;
      const int64_t got = read_at(t.fd, into, count * es, at);
      if (got != count * es) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (b < failure.band) failure = {b, at, got < 0 ? static_cast<int>(-got) : 0};
        failed.store(true, std::memory_order_relaxed);
        break;
      }
      if (direct) continue;
      const float* f = read_buf;
      if (t.dtype != SourceType::F32) {
        float* out = spec.layout == TensorLayout::Plain ? spec.dest + start : wide_buf;
        widen(t.dtype, read_buf, out, count);
        if (spec.layout == TensorLayout::Plain) continue;
        f = wide_buf;
      }
      PackedMatrix& m = *spec.packed;
      // A float32 matrix's panels are its float32 form: gathered straight into place.
      const bool in_place = m.type == WeightType::F32;
      auto panel_at = [&](int64_t p, int64_t r0) {
        return in_place ? reinterpret_cast<float*>(m.data + p * m.panel_bytes()) + r0 * kPanel
                        : panel_buf;
      };
      if (spec.layout == TensorLayout::PackNByK) {
        // f holds rows [p0 * kPanel, ...) of W^T, k floats each: panel p is its columns'
        // rows, transposed.
        for (int64_t p = band.first; p < band.first + band.count; ++p) {
          const int64_t cols = std::min(kPanel, m.n - p * kPanel);
          const float* rows = f + (p - band.first) * kPanel * m.k;
          float* out = panel_at(p, 0);
          if (cols == kPanel) {  // rows outer: 16 streams read, one written front to back
            for (int64_t r = 0; r < m.k; ++r) {
              for (int64_t j = 0; j < kPanel; ++j) out[r * kPanel + j] = rows[j * m.k + r];
            }
          } else {
            for (int64_t j = 0; j < kPanel; ++j) {
              for (int64_t r = 0; r < m.k; ++r) {
                out[r * kPanel + j] = j < cols ? rows[j * m.k + r] : 0.0f;
              }
            }
          }
          if (!in_place) kt.encode_rows(m, p, 0, m.k, out);
        }
      } else {
        // f holds rows [first, first + count) of W: each panel takes its 16 columns of them.
        for (int64_t p = 0; p < m.panels(); ++p) {
          const int64_t cols = std::min(kPanel, m.n - p * kPanel);
          float* out = panel_at(p, band.first);
          for (int64_t r = 0; r < band.count; ++r) {
            float* row = out + r * kPanel;
            const float* src = f + r * m.n + p * kPanel;
            if (cols == kPanel) {
              std::memcpy(row, src, kPanel * 4);  // a fixed size: inlined, not a call
            } else {
              for (int64_t j = 0; j < kPanel; ++j) row[j] = j < cols ? src[j] : 0.0f;
            }
          }
          if (!in_place) kt.encode_rows(m, p, band.first, band.count, out);
        }
      }
    }
  }

  if (failure.band != std::numeric_limits<size_t>::max()) {
    const FileTensor& t = tensors[bands[failure.band].tensor];
    if (failure.error != 0) {
      throw FileReadError(t.label + ": read failed at byte " + std::to_string(failure.at) +
                          " (" + std::strerror(failure.error) + ")");
    }
    int64_t total = element_bytes(t.dtype);
    for (int64_t d : t.shape) total *= d;
    struct stat st {};
    const int64_t size = fstat(t.fd, &st) == 0 ? static_cast<int64_t>(st.st_size) : failure.at;
    if (t.offset >= size) {
      throw FileReadError(t.label + ": the tensor starts at byte " + std::to_string(t.offset) +
                          ", past the end of the file (" + std::to_string(size) + " bytes)");
    }
    throw FileReadError(t.label + ": the file ends at byte " + std::to_string(size) +
                        ", before the tensor's end at " + std::to_string(t.offset + total) +
                        "; it was truncated while being read");
  }
  for (size_t i : index) loaded_[i] = true;
}

}  // namespace gpt2cpu
