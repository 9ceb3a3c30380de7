// Every kernel of every kernel set this CPU runs (or of the sets named on the command line)
// against a plain double-precision reference, on shapes that are not multiples of any SIMD
// width or tile, and the matmul operator on 1 and 2 threads (same bits on both). No Python:
// CI runs it on aarch64 under qemu, where the Python tests cannot run. Exits 1 on a
// mismatch, printing each.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpt2cpu/buffer.h"
#include "gpt2cpu/kernel_table.h"
#include "gpt2cpu/ops.h"
#include "gpt2cpu/packed_matrix.h"
#include "gpt2cpu/parallel.h"

namespace {

using gpt2cpu::KernelTable;
using Floats = std::vector<float>;

int g_failures = 0;
std::mt19937 g_rng(12345);

Floats random_floats(size_t n) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Floats v(n);
  for (float& x : v) x = normal(g_rng);
  return v;
}

// got against want, within rtol of the largest |want| (float32 sums in any order).
void expect_close(const char* isa, const std::string& what, const float* got,
                  const std::vector<double>& want, double rtol = 2e-5) {
  double scale = 1.0;
  for (double w : want) scale = std::fmax(scale, std::fabs(w));
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= rtol * scale)) {
      std::printf("FAIL %s %s: [%zu] = %.9g, want %.9g\n", isa, what.c_str(), i, got[i], want[i]);
      ++g_failures;
      return;
    }
  }
}

double gelu_ref(double v) {
  return 0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
}

// c (m, 16) = c + a (m, k) @ b (k, 16), in double.
std::vector<double> gemm_ref(int64_t m, int64_t k, const float* a, int64_t lda, const float* b,
                             const float* c, int64_t ldc) {
  std::vector<double> out(static_cast<size_t>(m * 16));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < 16; ++j) {
      double s = c[i * ldc + j];
      for (int64_t p = 0; p < k; ++p) s += double(a[i * lda + p]) * b[p * 16 + j];
      out[static_cast<size_t>(i * 16 + j)] = s;
    }
  }
  return out;
}

void check_gemm(const KernelTable& kt) {
  const int64_t rows = kt.gemm_rows;
  for (int64_t k : {1, 7, 37, 300}) {
    const Floats b = random_floats(static_cast<size_t>(k * 16));
    for (int64_t m = 1; m <= rows; ++m) {
      const Floats a = random_floats(static_cast<size_t>(m * (k + 3)));
      Floats c = random_floats(static_cast<size_t>(m * 17));
      const auto want = gemm_ref(m, k, a.data(), k + 3, b.data(), c.data(), 17);
      kt.gemm_tile(m, k, a.data(), k + 3, b.data(), c.data(), 17);
      Floats got(static_cast<size_t>(m * 16));
      for (int64_t i = 0; i < m; ++i) std::memcpy(&got[i * 16], &c[i * 17], 16 * sizeof(float));
      expect_close(kt.name, "gemm_tile m=" + std::to_string(m) + " k=" + std::to_string(k),
                   got.data(), want);
    }
    // pack_tile + gemm_packed, every TileEnd, full and ragged tiles.
    for (int64_t m : {rows, rows - 1, int64_t{1}}) {
      const Floats a = random_floats(static_cast<size_t>(m * (k + 2)));
      Floats packed(static_cast<size_t>(k * rows) + 1, 99.0f);
      kt.pack_tile(packed.data(), a.data(), k + 2, m, k);
      if (packed[static_cast<size_t>(k * rows)] != 99.0f) {
        std::printf("FAIL %s pack_tile wrote past its tile\n", kt.name);
        ++g_failures;
      }
      const Floats bias = random_floats(16);
      for (int variant = 0; variant < 4; ++variant) {
        gpt2cpu::TileEnd end;
        end.bias = variant & 1 ? bias.data() : nullptr;
        end.add_to_c = variant != 2;
        end.gelu_tanh = variant >= 2;
        Floats c = random_floats(static_cast<size_t>(rows * 16));
        const Floats zeros(c.size(), 0.0f);
        auto want = gemm_ref(m, k, a.data(), k + 2, b.data(), end.add_to_c ? c.data() : zeros.data(), 16);
        for (size_t i = 0; i < want.size(); ++i) {
          if (end.bias != nullptr) want[i] += bias[i % 16];
          if (end.gelu_tanh) want[i] = gelu_ref(want[i]);
        }
        kt.gemm_packed(k, packed.data(), b.data(), c.data(), 16, end);
        expect_close(kt.name, "gemm_packed m=" + std::to_string(m) + " k=" + std::to_string(k) +
                     " variant " + std::to_string(variant), c.data(), want);
      }
    }
    // gemv over 1-5 panels.
    for (int64_t panels = 1; panels <= 5; ++panels) {
      const Floats a = random_floats(static_cast<size_t>(k));
      const Floats bp = random_floats(static_cast<size_t>(panels * k * 16));
      Floats c = random_floats(static_cast<size_t>(panels * 16));
      std::vector<double> want;
      for (int64_t q = 0; q < panels; ++q) {
        const auto part = gemm_ref(1, k, a.data(), k, bp.data() + q * k * 16, c.data() + q * 16, 16);
        want.insert(want.end(), part.begin(), part.end());
      }
      kt.gemv(k, a.data(), bp.data(), panels, c.data());
      expect_close(kt.name, "gemv panels=" + std::to_string(panels) + " k=" + std::to_string(k),
                   c.data(), want);
    }
  }
}

void check_elementwise(const KernelTable& kt) {
  for (int64_t n : {1, 7, 33, 770}) {
    const Floats x = random_floats(static_cast<size_t>(n));
    const Floats w = random_floats(static_cast<size_t>(n)), b = random_floats(static_cast<size_t>(n));
    double mean = 0, var = 0;
    for (float v : x) mean += v;
    mean /= n;
    for (float v : x) var += (v - mean) * (v - mean);
    var /= n;
    std::vector<double> want(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) want[i] = (x[i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i];
    Floats out(static_cast<size_t>(n));
    kt.layernorm(out.data(), x.data(), w.data(), b.data(), n, 1e-5f);
    expect_close(kt.name, "layernorm n=" + std::to_string(n), out.data(), want, 1e-4);

    Floats g = x;
    for (int64_t i = 0; i < n; ++i) want[i] = gelu_ref(x[i]);
    kt.gelu_tanh(g.data(), n);
    expect_close(kt.name, "gelu_tanh n=" + std::to_string(n), g.data(), want, 1e-5);

    for (int64_t streams : {1, 3}) {
      double s = 0;
      for (float v : x) s += v;
      const float got = kt.sum(x.data(), n, streams);
      expect_close(kt.name, "sum n=" + std::to_string(n), &got, {s}, 1e-5);
    }

    Floats logits = random_floats(static_cast<size_t>(n));
    if (n > 1) logits[0] = -INFINITY;  // a banned token weighs exactly 0
    float top = -INFINITY;
    for (float v : logits) top = v > top ? v : top;
    Floats e(static_cast<size_t>(n));
    const double total = kt.exp_weights(e.data(), logits.data(), n, top);
    double want_total = 0;
    for (int64_t i = 0; i < n; ++i) {
      want[i] = std::exp(double(logits[i]) - top);
      want_total += want[i];
    }
    expect_close(kt.name, "exp_weights n=" + std::to_string(n), e.data(), want, 1e-6);
    const float total_f = static_cast<float>(total);
    expect_close(kt.name, "exp_weights sum", &total_f, {want_total}, 1e-6);
  }
  const int64_t lanes = kt.multiply_add_lanes;
  double want = 0;
  for (int64_t j = 0; j < lanes; ++j) want += 2.0 + (0.5 + j - 2.0) / 8.0;
  const float got = kt.multiply_add(3, 0.5f);
  expect_close(kt.name, "multiply_add", &got, {want}, 1e-6);
}

// out (d) = softmax(scale K q) V, in double.
std::vector<double> attend_ref(const float* q, const float* keys, const float* values, int64_t n,
                               int64_t d, double scale) {
  std::vector<double> s(static_cast<size_t>(n)), out(static_cast<size_t>(d), 0.0);
  double top = -INFINITY, total = 0;
  for (int64_t t = 0; t < n; ++t) {
    double dot = 0;
    for (int64_t i = 0; i < d; ++i) dot += double(q[i]) * keys[t * d + i];
    s[t] = dot * scale;
    top = std::fmax(top, s[t]);
  }
  for (int64_t t = 0; t < n; ++t) total += s[t] = std::exp(s[t] - top);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < d; ++i) out[i] += s[t] / total * values[t * d + i];
  }
  return out;
}

void check_attention(const KernelTable& kt) {
  // attend scores keys in groups of a vector's lanes (any tail key by key) and a head's
  // width in whole vectors (any tail lane by lane): widths and key counts on either side.
  for (int64_t d : {7, 16, 20, 64, 72}) {
    for (int64_t n : {1, 5, 16, 17, 37, 100, 129}) {
      const Floats q = random_floats(static_cast<size_t>(d));
      const Floats k = random_floats(static_cast<size_t>(n * d)), v = random_floats(static_cast<size_t>(n * d));
      Floats out(static_cast<size_t>(d)), scores(static_cast<size_t>(n));
      // The next call's keys: its first rows are only fetched toward the cache.
      const gpt2cpu::AttendNext next{v.data(), n};
      kt.attend(out.data(), q.data(), k.data(), v.data(), n, d, 0.3f, scores.data(), next);
      expect_close(kt.name, "attend n=" + std::to_string(n) + " d=" + std::to_string(d),
                   out.data(), attend_ref(q.data(), k.data(), v.data(), n, d, 0.3), 1e-5);
    }
    for (int64_t m : {int64_t{1}, int64_t{5}, gpt2cpu::kAttendBlock}) {
      for (int64_t pos0 : {0, 3, 29}) {
        const int64_t n = pos0 + m;
        const Floats q = random_floats(static_cast<size_t>(m * (d + 1)));
        const Floats k = random_floats(static_cast<size_t>(n * d)), v = random_floats(static_cast<size_t>(n * d));
        Floats out(static_cast<size_t>(m * d));
        Floats scratch(static_cast<size_t>(gpt2cpu::attend_block_scratch(n, d)));
        gpt2cpu::AttendBlock job{out.data(), d, q.data(), d + 1, k.data(), v.data(), m, pos0, d, 0.3f};
        kt.attend_block(job, scratch.data());
        std::vector<double> want;
        for (int64_t i = 0; i < m; ++i) {
          const auto row = attend_ref(q.data() + i * (d + 1), k.data(), v.data(), pos0 + i + 1, d, 0.3);
          want.insert(want.end(), row.begin(), row.end());
        }
        expect_close(kt.name, "attend_block m=" + std::to_string(m) + " pos0=" +
                     std::to_string(pos0) + " d=" + std::to_string(d), out.data(), want, 1e-5);
      }
    }
  }
}

// x rounded to bfloat16 by the scalar definition, and the same values widened back: what a
// bfloat16 cache holds, and the float32 cache that holds exactly those values.
std::vector<uint16_t> to_bf16_ref(const Floats& x) {
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) h[i] = gpt2cpu::float_to_bf16(x[i]);
  return h;
}

Floats widened(const std::vector<uint16_t>& h) {
  Floats f(h.size());
  for (size_t i = 0; i < h.size(); ++i) f[i] = gpt2cpu::bf16_to_float(h[i]);
  return f;
}

// The bfloat16 kernels against the float32 ones on the same (widened) keys and values. The
// widening is exact and the arithmetic is the float32 kernels', but not to the bit: where d
// is not a multiple of the vector width, the scalar tail loops of the two instantiations
// come out up to ~1.5e-7 apart on x86's avx2 and avx512 (the compiler contracts their
// multiply-adds into FMAs differently: with -ffp-contract=off the bits match), so attend's
// tolerance. Wrong widening or strides are off by far more. Shapes as check_attention's.
void check_attention_bf16(const KernelTable& kt) {
  for (int64_t d : {7, 16, 20, 64, 72}) {
    for (int64_t n : {1, 5, 16, 17, 37, 100, 129}) {
      const Floats q = random_floats(static_cast<size_t>(d));
      const auto kh = to_bf16_ref(random_floats(static_cast<size_t>(n * d)));
      const auto vh = to_bf16_ref(random_floats(static_cast<size_t>(n * d)));
      const Floats k = widened(kh), v = widened(vh);
      Floats want(static_cast<size_t>(d)), got(static_cast<size_t>(d)), scores(static_cast<size_t>(n));
      kt.attend(want.data(), q.data(), k.data(), v.data(), n, d, 0.3f, scores.data(), {});
      kt.attend_bf16(got.data(), q.data(), kh.data(), vh.data(), n, d, 0.3f, scores.data(),
                     gpt2cpu::AttendNext{vh.data(), n});
      expect_close(kt.name, "attend_bf16 n=" + std::to_string(n) + " d=" + std::to_string(d),
                   got.data(), std::vector<double>(want.begin(), want.end()), 1e-5);
    }
    for (int64_t m : {int64_t{1}, int64_t{5}, gpt2cpu::kAttendBlock}) {
      for (int64_t pos0 : {0, 3, 29}) {
        const int64_t n = pos0 + m;
        const Floats q = random_floats(static_cast<size_t>(m * (d + 1)));
        const auto kh = to_bf16_ref(random_floats(static_cast<size_t>(n * d)));
        const auto vh = to_bf16_ref(random_floats(static_cast<size_t>(n * d)));
        const Floats k = widened(kh), v = widened(vh);
        Floats want(static_cast<size_t>(m * d)), got(static_cast<size_t>(m * d));
        Floats scratch(static_cast<size_t>(gpt2cpu::attend_block_scratch(n, d)));
        const gpt2cpu::AttendBlock job{want.data(), d, q.data(), d + 1, k.data(), v.data(), m, pos0, d, 0.3f};
        kt.attend_block(job, scratch.data());
        const gpt2cpu::AttendBlockBf16 job_bf16{got.data(), d, q.data(), d + 1, kh.data(), vh.data(),
                                                m, pos0, d, 0.3f};
        kt.attend_block_bf16(job_bf16, scratch.data());
        expect_close(kt.name, "attend_block_bf16 m=" + std::to_string(m) + " pos0=" +
                     std::to_string(pos0) + " d=" + std::to_string(d), got.data(),
                     std::vector<double>(want.begin(), want.end()), 1e-5);
      }
    }
  }
}

// An int8 cache's rows: random values in [-127, 127] and a scale each, and the floats
// they stand for (value * scale, exact in float32).
struct Int8Rows {
  std::vector<int8_t> q;
  Floats scales, f;
};
Int8Rows int8_rows(int64_t n, int64_t d) {
  Int8Rows r;
  const Floats x = random_floats(static_cast<size_t>(n * d));
  const Floats s = random_floats(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    const float scale = 0.01f + 0.02f * std::fabs(s[static_cast<size_t>(j)]);
    r.scales.push_back(scale);
    for (int64_t i = 0; i < d; ++i) {
      const long v = std::lround(127.0 * x[static_cast<size_t>(j * d + i)] / 4.0);
      const long clamped_long = v < -127 ? -127 : (v > 127 ? 127 : v);
      const auto clamped = static_cast<int8_t>(clamped_long);
      r.q.push_back(clamped);
      r.f.push_back(static_cast<float>(clamped) * scale);
    }
  }
  return r;
}

// The int8 kernels against the float32 ones on the floats the rows stand for: the scales
// are applied to whole scores and softmax weights instead of to each element, which only
// reorders the rounding. Shapes as check_attention_bf16's.
void check_attention_i8(const KernelTable& kt) {
  for (int64_t d : {7, 16, 20, 64, 72}) {
    for (int64_t n : {1, 5, 16, 17, 37, 100, 129}) {
      const Floats q = random_floats(static_cast<size_t>(d));
      const Int8Rows k = int8_rows(n, d), v = int8_rows(n, d);
      Floats want(static_cast<size_t>(d)), got(static_cast<size_t>(d)), scores(static_cast<size_t>(n));
      kt.attend(want.data(), q.data(), k.f.data(), v.f.data(), n, d, 0.3f, scores.data(), {});
      kt.attend_i8(got.data(), q.data(), k.q.data(), v.q.data(), k.scales.data(), v.scales.data(),
                   n, d, 0.3f, scores.data(), gpt2cpu::AttendNext{v.q.data(), n});
      expect_close(kt.name, "attend_i8 n=" + std::to_string(n) + " d=" + std::to_string(d),
                   got.data(), std::vector<double>(want.begin(), want.end()), 1e-5);
    }
    for (int64_t m : {int64_t{1}, int64_t{5}, gpt2cpu::kAttendBlock}) {
      for (int64_t pos0 : {0, 3, 29}) {
        const int64_t n = pos0 + m;
        const Floats q = random_floats(static_cast<size_t>(m * (d + 1)));
        const Int8Rows k = int8_rows(n, d), v = int8_rows(n, d);
        Floats want(static_cast<size_t>(m * d)), got(static_cast<size_t>(m * d));
        Floats scratch(static_cast<size_t>(gpt2cpu::attend_block_scratch(n, d)));
        const gpt2cpu::AttendBlock job{want.data(), d, q.data(), d + 1, k.f.data(), v.f.data(),
                                       m, pos0, d, 0.3f};
        kt.attend_block(job, scratch.data());
        gpt2cpu::AttendBlockI8 job_i8{got.data(), d, q.data(), d + 1, k.q.data(), v.q.data(),
                                      m, pos0, d, 0.3f};
        job_i8.key_scales = k.scales.data();
        job_i8.value_scales = v.scales.data();
        kt.attend_block_i8(job_i8, scratch.data());
        expect_close(kt.name, "attend_block_i8 m=" + std::to_string(m) + " pos0=" +
                     std::to_string(pos0) + " d=" + std::to_string(d), got.data(),
                     std::vector<double>(want.begin(), want.end()), 1e-5);
      }
    }
  }
}

// to_bf16 against float_to_bf16, exactly: every set rounds as the scalar definition does,
// since a cache's bits must not depend on the set that wrote it. NaNs only need to stay
// NaN (which quiet NaN a set makes is its own); rounding one as a number could make inf.
void check_to_bf16(const KernelTable& kt) {
  const auto bits = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  Floats awkward = {
      bits(0x3f808000u),  // tie, even below: rounds down
      bits(0x3f818000u),  // tie, odd below: rounds up
      bits(0x3f807fffu), bits(0x3f808001u),  // either side of a tie
      bits(0xbf818000u), bits(0xbf808001u),  // the same, negative
      bits(0x7f7fffffu),  // the largest float: rounds to inf
      bits(0x7f7f7fffu),  // just below the tie under it: stays finite
      bits(0xff7fffffu),
      std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
      // NaNs that rounding as a number would lose: signalling ones whose payload is all in
      // the dropped half (-> +-inf), and quiet ones where it carries into the sign (-> +-0).
      bits(0x7f800001u), bits(0xff800001u), bits(0x7fbfffffu),
      bits(0x7fc00000u), bits(0xffc00001u), bits(0x7fffffffu), bits(0xffffffffu),
      bits(0x00000001u), bits(0x00008000u), bits(0x00018000u), bits(0x807fffffu),  // subnormals
      -0.0f, 0.0f, 1.0f, 3.14159265f};
  const Floats normals = random_floats(100);
  awkward.insert(awkward.end(), normals.begin(), normals.end());
  for (int64_t n : {1, 7, 17, 100}) {
    // Each value at every lane (of a vector and of the tail): rotated through x, pass by pass.
    for (size_t start = 0; start < awkward.size(); ++start) {
      Floats x(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) x[i] = awkward[(start + i) % awkward.size()];
      const auto want = to_bf16_ref(x);
      std::vector<uint16_t> got(static_cast<size_t>(n) + 1, 0x1234);
      kt.to_bf16(x.data(), got.data(), n);
      bool ok = got[static_cast<size_t>(n)] == 0x1234;
      for (int64_t i = 0; ok && i < n; ++i) {
        ok = std::isnan(x[i]) ? std::isnan(gpt2cpu::bf16_to_float(got[i])) : got[i] == want[i];
        if (!ok) {
          uint32_t u;
          std::memcpy(&u, &x[i], 4);
          std::printf("FAIL %s to_bf16 n=%lld: [%lld] %08x -> %04x, want %04x\n", kt.name,
                      static_cast<long long>(n), static_cast<long long>(i),
                      static_cast<unsigned>(u), got[i], want[i]);
        }
      }
      if (!ok) {
        if (got[static_cast<size_t>(n)] != 0x1234) {
          std::printf("FAIL %s to_bf16 n=%lld wrote past its end\n", kt.name,
                      static_cast<long long>(n));
        }
        ++g_failures;
      }
    }
  }
}

// quantize_group against the scalar definition, exactly (every set gives the same bits):
// odd lengths (the vector loop and its tail), groups of zeros and subnormals, ties, and non-finite
// inputs (scale NaN, q and sum 0).
void check_quantize(const KernelTable& kt) {
  for (int64_t n : {1, 5, 16, 33, 64, 70}) {
    for (int variant = 0; variant < 4; ++variant) {
      Floats x = random_floats(static_cast<size_t>(n));
      if (variant == 1) {  // all zero, or zero and subnormal: below kQuantizeFloor
        std::fill(x.begin(), x.end(), n > 5 ? 1e-39f : 0.0f);
        x[0] = 0.0f;
      }
      if (variant == 2) {  // 127 / max = 1: x + 0.5 are ties
        for (int64_t i = 0; i < n; ++i) x[i] = float(i % 9) - 4.5f;
        x[0] = 127.0f;
      }
      if (variant == 3) x[static_cast<size_t>(n / 2)] = std::numeric_limits<float>::infinity();
      float top = 0.0f;
      bool finite = true;
      for (float v : x) {
        top = std::fabs(v) > top ? std::fabs(v) : top;
        finite = finite && std::isfinite(v);
      }
      const bool zero = top < gpt2cpu::kQuantizeFloor;
      const float inv = zero ? 0.0f : 127.0f / top;
      std::vector<int8_t> want(static_cast<size_t>(n), 0), got(static_cast<size_t>(n) + 1, 77);
      int32_t want_sum = 0;
      for (int64_t i = 0; finite && i < n; ++i) {
        const float v = std::fmin(std::fmax(std::nearbyint(x[i] * inv), -127.0f), 127.0f);
        want[i] = static_cast<int8_t>(v);
        want_sum += want[i];
      }
      float scale = -1.0f;
      int32_t sum = -1;
      kt.quantize_group(x.data(), n, got.data(), &scale, &sum);
      const bool scale_ok = finite ? scale == (zero ? 0.0f : top / 127.0f) : std::isnan(scale);
      if (!scale_ok || sum != want_sum || std::memcmp(got.data(), want.data(), want.size()) != 0 ||
          got[static_cast<size_t>(n)] != 77) {
        std::printf("FAIL %s quantize_group n=%lld variant %d\n", kt.name, static_cast<long long>(n),
                    variant);
        ++g_failures;
      }
    }
  }
}

// argmax against numpy's rule written plainly (the first NaN, else the first largest), on
// lengths around the vector pass's chunks (16 vectors) and its tail: the largest value
// repeated in several chunks and in the tail, at the very end, -inf and +inf, NaN.
void check_argmax(const KernelTable& kt) {
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t n : {1, 7, 64, 255, 256, 257, 1000, 4099}) {
    for (int variant = 0; variant < 7; ++variant) {
      Floats x = random_floats(static_cast<size_t>(n));
      const auto at = [&](double f) { return static_cast<size_t>(f * static_cast<double>(n - 1)); };
      if (variant == 1 || variant == 2) {  // ties: the first must win
        x[at(0.7)] = 9.0f;
        x[at(0.3)] = 9.0f;
        x[at(1.0)] = 9.0f;
        if (variant == 2) x[at(0.3)] = 8.0f;
      }
      if (variant == 3) x[at(1.0)] = 50.0f;  // in the tail
      if (variant == 4) {
        std::fill(x.begin(), x.end(), -inf);
        x[at(0.6)] = -3.0f;
      }
      if (variant == 5) x[at(0.4)] = inf;
      if (variant == 6) {
        x[at(0.8)] = std::numeric_limits<float>::quiet_NaN();
        x[at(0.5)] = inf;
      }
      int64_t want = 0;
      for (int64_t i = 0; i < n; ++i) {
        if (std::isnan(x[i])) {
          want = i;
          break;
        }
        if (x[i] > x[want]) want = i;
      }
      const int64_t got = kt.argmax(x.data(), n);
      if (got != want) {
        std::printf("FAIL %s argmax n=%lld variant %d: %lld, want %lld\n", kt.name,
                    static_cast<long long>(n), variant, static_cast<long long>(got),
                    static_cast<long long>(want));
        ++g_failures;
      }
    }
  }
}

// The operator over a packed matrix of every weight type on 1 and 2 threads: the same bits,
// and right against the stored weights (dequantized) in double. Integer types quantize the
// input rows to 8 bits as well, so they are held to that rounding's bound instead; a wrong
// layout or a lost scale is off by far more.
void check_matmul(const KernelTable& kt) {
  for (const auto& row : gpt2cpu::kWeightTypeInfo) {
    const gpt2cpu::WeightType type = row.type;
    for (const auto& [t, k, n] : std::vector<std::array<int64_t, 3>>{{1, 300, 100}, {7, 37, 33}, {16, 70, 40}, {20, 65, 17}, {97, 50, 31}, {130, 513, 33}}) {
      const Floats a = random_floats(static_cast<size_t>(t * k)), w = random_floats(static_cast<size_t>(k * n));
      const int64_t data = (gpt2cpu::PackedMatrix::data_bytes(type, k, n) + 63) / 64 * 64;
      const int64_t scales = gpt2cpu::PackedMatrix::scale_bytes(type, k, n);
      gpt2cpu::Buffer storage(static_cast<size_t>(data + scales) / sizeof(float));
      uint8_t* base = reinterpret_cast<uint8_t*>(storage.data());
      gpt2cpu::PackedMatrix packed{type, base,
                                   scales != 0 ? reinterpret_cast<float*>(base + data) : nullptr, k, n};
      packed.pack_from_k_by_n(w.data());
      std::vector<double> want(static_cast<size_t>(t * n));
      for (int64_t i = 0; i < t; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t p = 0; p < k; ++p) s += double(a[i * k + p]) * packed.at(p, j);
          want[i * n + j] = s;
        }
      }
      // (relative to the largest output, as expect_close measures)
      const double tolerance = row.integer ? 0.02 : 1e-5 * std::sqrt(double(k));
      Floats first;
      for (int threads : {1, 2}) {
        Floats out(static_cast<size_t>(t * n));
        gpt2cpu::matmul(out.data(), n, a.data(), k, t, packed, nullptr, gpt2cpu::Accumulate::No,
                        gpt2cpu::Parallel(threads, kt));
        const std::string what = std::string("matmul ") + row.name + " t=" + std::to_string(t) +
                                 " k=" + std::to_string(k) + " threads=" + std::to_string(threads);
        expect_close(kt.name, what, out.data(), want, tolerance);
        if (first.empty()) {
          first = out;
        } else if (std::memcmp(first.data(), out.data(), out.size() * sizeof(float)) != 0) {
          std::printf("FAIL %s %s: not the same bits as on 1 thread\n", kt.name, what.c_str());
          ++g_failures;
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) names.emplace_back(argv[i]);
  if (names.empty()) names = gpt2cpu::available_isas();
  for (const auto& [feature, has] : gpt2cpu::cpu_features()) {
    std::printf("%s%s", has ? "+" : "-", feature.c_str());
    std::printf(" ");
  }
  std::printf("\n");
  for (const std::string& name : names) {
    const KernelTable* kt = nullptr;
    try {
      kt = &gpt2cpu::kernels_named(name);
    } catch (const std::exception& e) {
      std::printf("FAIL %s\n", e.what());
      return 1;
    }
    const int before = g_failures;
    check_gemm(*kt);
    check_elementwise(*kt);
    check_attention(*kt);
    check_attention_bf16(*kt);
    check_attention_i8(*kt);
    check_to_bf16(*kt);
    check_quantize(*kt);
    check_argmax(*kt);
    check_matmul(*kt);
    std::printf("%s: %s (gemm_rows %lld)\n", kt->name, g_failures == before ? "ok" : "FAILED",
                static_cast<long long>(kt->gemm_rows));
  }
  return g_failures == 0 ? 0 : 1;
}
