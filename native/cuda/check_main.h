// What the GPU check programs (kernel_check.cu, vector_check.cu) share in main(): their command line
// and the answer on a machine without a GPU.
//
// Command line: [--bench] [--json FILE] [SEED] and each program's own flags. A flag no one knows is
// refused (exit status 2) rather than read as a seed. Without a CUDA device the program prints
// "no CUDA device: nothing checked" and exits 77 (the tests and scripts/gpu-check.sh read that as
// "compiled, not run").
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <cuda_runtime.h>
#include <functional>
#include <string>
#include <vector>

namespace qrank::gpu_check {

// A program's own flag: `takes_value` flags are followed by their value, given to `set`.
struct Flag {
  const char* name;
  bool takes_value;
  std::function<void(const char* value)> set;
};

struct Options {
  unsigned long long seed = static_cast<unsigned long long>(std::time(nullptr));
  bool bench = false;
  const char* json = nullptr;
};

// Parses argv; returns false (having said why) on a flag no one knows or a missing value.
inline bool parse(int argc, char** argv, const std::vector<Flag>& own, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const bool has_value = i + 1 < argc;
    if (std::strcmp(a, "--bench") == 0) {
      o.bench = true;
      continue;
    }
    if (std::strcmp(a, "--json") == 0 && has_value) {
      o.json = argv[++i];
      continue;
    }
    bool known = false;
    for (const Flag& f : own) {
      if (std::strcmp(a, f.name) != 0 || (f.takes_value && !has_value)) continue;
      f.set(f.takes_value ? argv[++i] : nullptr);
      known = true;
      break;
    }
    if (known) continue;
    char* end = nullptr;
    const unsigned long long seed = std::strtoull(a, &end, 10);
    if (a[0] == '\0' || *end != '\0') {
      std::string names = "--bench, --json FILE";
      for (const Flag& f : own) names += std::string(", ") + f.name + (f.takes_value ? " VALUE" : "");
      std::fprintf(stderr, "%s: unknown argument '%s' (flags: %s; or a seed)\n", argv[0], a, names.c_str());
      return false;
    }
    o.seed = seed;
  }
  return true;
}

// True when a CUDA device is present; otherwise says so (the caller exits 77).
inline bool have_device() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0) return true;
  std::printf("no CUDA device: nothing checked\n");
  return false;
}

}  // namespace qrank::gpu_check
