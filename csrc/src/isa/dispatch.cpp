// Which kernel sets this CPU can run, and the process's default. The shipped binary is
// built for the platform's baseline, so nothing faster than the CPU can run is ever called.
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gpt2cpu/kernel_table.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace gpt2cpu {

namespace {

#if defined(__x86_64__)
// __builtin_cpu_supports needs a literal name: one line per feature kernel_info reports.
bool cpu_has(const char* feature) {
  __builtin_cpu_init();
  const std::string f = feature;
  if (f == "avx2") return __builtin_cpu_supports("avx2");
  if (f == "fma") return __builtin_cpu_supports("fma");
  if (f == "f16c") return __builtin_cpu_supports("f16c");
  if (f == "avx512f") return __builtin_cpu_supports("avx512f");
  if (f == "avx512bw") return __builtin_cpu_supports("avx512bw");
  if (f == "avx512vl") return __builtin_cpu_supports("avx512vl");
  if (f == "avx512dq") return __builtin_cpu_supports("avx512dq");
  if (f == "avx512_vnni") return __builtin_cpu_supports("avx512vnni");
  if (f == "avx512_bf16") return __builtin_cpu_supports("avx512bf16");
  return false;
}

// XCR0: the register states the OS saves on a context switch. A CPU whose OS does not save
// the YMM (bits 1-2) or the ZMM and mask (bits 5-7) state cannot use those registers.
uint64_t os_saved_state() {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
  __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(1), "c"(0));
  if ((ecx & (1u << 27)) == 0) return 0;  // no OSXSAVE: no XGETBV either
  uint32_t lo = 0, hi = 0;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

bool runs_avx2() {
  return (os_saved_state() & 0x6) == 0x6 && cpu_has("avx2") && cpu_has("fma") &&
         cpu_has("f16c");
}
bool runs_avx512() {
  return (os_saved_state() & 0xe6) == 0xe6 && runs_avx2() && cpu_has("avx512f") &&
         cpu_has("avx512bw") && cpu_has("avx512vl") && cpu_has("avx512dq");
}
#endif

struct Set {
  const char* name;
  const KernelTable& (*table)();
  bool (*runs)();
};

// Worst first: the best available is the last that runs.
const std::vector<Set>& sets() {
  static const std::vector<Set> all = {
      {"generic", generic_kernels, [] { return true; }},
#if defined(GPT2CPU_HAVE_AVX2)
      {"avx2", avx2_kernels, runs_avx2},
#endif
#if defined(GPT2CPU_HAVE_AVX512)
      {"avx512", avx512_kernels, runs_avx512},
#endif
#if defined(GPT2CPU_HAVE_NEON)
      {"neon", neon_kernels, [] { return true; }},  // part of the aarch64 baseline
#endif
  };
  return all;
}

const KernelTable& best_table() {
  const KernelTable* best = nullptr;
  for (const Set& s : sets()) {
    if (s.runs()) best = &s.table();
  }
  return *best;
}

const KernelTable& initial_table() {
  const char* forced = std::getenv("GPT2CPU_ISA");
  if (forced == nullptr || *forced == '\0') return best_table();
  try {
    return kernels_named(forced);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("GPT2CPU_ISA: ") + e.what());
  }
}

std::atomic<const KernelTable*> g_table{nullptr};

}  // namespace

#if defined(GPT2CPU_HAVE_AVX512)
bool cpu_has_avx512_vnni() { return runs_avx512() && cpu_has("avx512_vnni"); }
#endif

const KernelTable& kernels_named(const std::string& name) {
  if (name == "auto") return best_table();
  std::string known;
  for (const Set& s : sets()) {
    if (!s.runs()) continue;
    if (name == s.name) return s.table();
    known += (known.empty() ? "" : ", ") + std::string(s.name);
  }
  for (const Set& s : sets()) {
    if (name == s.name) {
      throw std::invalid_argument("ISA '" + name + "' is not supported by this CPU; it can run: " +
                                  known);
    }
  }
  throw std::invalid_argument("unknown ISA '" + name + "'; this CPU can run: " + known);
}

void init_default_isa() {
  if (g_table.load(std::memory_order_acquire) == nullptr) {
    g_table.store(&initial_table(), std::memory_order_release);
  }
}

const KernelTable& kernels() {
  const KernelTable* table = g_table.load(std::memory_order_acquire);
  if (table != nullptr) return *table;
  // Not chosen yet: init_default_isa() failed or was never called. The callers ask for the
  // table where they can report the error (the table is handed to parallel regions, never
  // looked up inside one), so a bad GPT2CPU_ISA throws again here.
  table = &initial_table();
  g_table.store(table, std::memory_order_release);
  return *table;
}

std::vector<std::string> available_isas() {
  std::vector<std::string> names;
  for (const Set& s : sets()) {
    if (s.runs()) names.emplace_back(s.name);
  }
  return names;
}

void set_isa(const std::string& name) {
  g_table.store(&kernels_named(name), std::memory_order_release);
}

std::vector<std::pair<std::string, bool>> cpu_features() {
  std::vector<std::pair<std::string, bool>> out;
#if defined(__x86_64__)
  for (const char* f : {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                        "avx512_vnni", "avx512_bf16"}) {
    out.emplace_back(f, cpu_has(f));
  }
  out.emplace_back("os_saves_zmm", (os_saved_state() & 0xe6) == 0xe6);
#elif defined(__aarch64__) && defined(__linux__)
  const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
  out.emplace_back("asimd", (hw & (1ul << 1)) != 0);       // HWCAP_ASIMD
  out.emplace_back("asimddp", (hw & (1ul << 20)) != 0);    // HWCAP_ASIMDDP
  out.emplace_back("fphp", (hw & (1ul << 9)) != 0);        // HWCAP_FPHP
  out.emplace_back("i8mm", (hw2 & (1ul << 13)) != 0);      // HWCAP2_I8MM
  out.emplace_back("bf16", (hw2 & (1ul << 14)) != 0);      // HWCAP2_BF16
#endif
  return out;
}

}  // namespace gpt2cpu
