// Picks the kernel table at run time: the best the CPU supports, unless GPT2CPU_ISA says
// otherwise. The shipped binary is built for baseline x86-64 (or the platform's baseline),
// so nothing faster than the CPU can run is ever called.
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpt2cpu/kernels.h"

namespace gpt2cpu {

namespace {

bool cpu_has_avx2() {
#if defined(GPT2CPU_HAVE_AVX2)
  // libgcc's check covers the OS enabling the YMM state (XGETBV) as well as CPUID.
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(GPT2CPU_HAVE_AVX2)
  __builtin_cpu_init();
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

bool cpu_has_avx512_vnni() {
#if defined(GPT2CPU_HAVE_AVX2)
  return cpu_has_avx512() && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

#if defined(GPT2CPU_HAVE_AVX2)
// TEMPORARY: avx2's float kernels with the AVX-512 weight kernels, until the avx512 set.
const KernelTable& avx512_bridge() {
  static const KernelTable table = [] {
    KernelTable t = avx2_kernels();
    t.name = "avx512";
    if (cpu_has_avx512_vnni()) {
      fill_avx512_vnni_weight_kernels(t.weights);
    } else {
      fill_avx512_weight_kernels(t.weights);
    }
    return t;
  }();
  return table;
}
#endif

const KernelTable* table_named(const std::string& name) {
  if (name == "generic") return &generic_kernels();
#if defined(GPT2CPU_HAVE_AVX2)
  if (name == "avx2") {
    if (!cpu_has_avx2()) {
      throw std::invalid_argument("ISA 'avx2' is not supported by this CPU (needs AVX2, FMA and F16C)");
    }
    return &avx2_kernels();
  }
  if (name == "avx512") {
    if (!cpu_has_avx512()) {
      throw std::invalid_argument("ISA 'avx512' is not supported by this CPU (needs AVX-512 F, BW, VL and DQ)");
    }
    return &avx512_bridge();
  }
#endif
  std::string known;
  for (const auto& isa : available_isas()) known += (known.empty() ? "" : ", ") + isa;
  throw std::invalid_argument("unknown ISA '" + name + "'; this CPU can run: " + known);
}

const KernelTable* best_table() {
#if defined(GPT2CPU_HAVE_AVX2)
  if (cpu_has_avx512()) return &avx512_bridge();
  if (cpu_has_avx2()) return &avx2_kernels();
#endif
  return &generic_kernels();
}

const KernelTable* initial_table() {
  const char* forced = std::getenv("GPT2CPU_ISA");
  if (forced != nullptr && *forced != '\0' && std::string(forced) != "auto") {
    try {
      return table_named(forced);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("GPT2CPU_ISA: ") + e.what());
    }
  }
  return best_table();
}

std::atomic<const KernelTable*> g_table{nullptr};

}  // namespace

const KernelTable& kernels() {
  const KernelTable* table = g_table.load(std::memory_order_acquire);
  if (table == nullptr) {
    table = initial_table();
    g_table.store(table, std::memory_order_release);
  }
  return *table;
}

std::vector<std::string> available_isas() {
  std::vector<std::string> names{"generic"};
  if (cpu_has_avx2()) names.emplace_back("avx2");
  if (cpu_has_avx512()) names.emplace_back("avx512");
  return names;
}

void set_isa(const std::string& name) {
  const KernelTable* table = name == "auto" ? best_table() : table_named(name);
  g_table.store(table, std::memory_order_release);
}

}  // namespace gpt2cpu
