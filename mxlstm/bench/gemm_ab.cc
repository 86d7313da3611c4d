// The kernel's packed products (mxlstm/kernels/gemm.h) against the BLAS it would call,
// one thread, interleaved repeats; built and run by `python -m mxlstm.bench.gemm_ab`.
//
// usage: gemm_ab BLAS_LIBRARY REPEATS M N K   (C (M x N) = A (M x K) B', B given as (N x K),
//        as the per-step product h Wh'), and with a 6th argument "tn": C = A' B with A
//        given as (K x M), B as (K x N) (the weight gradient dWh = dG' h').
// Prints one JSON line: median seconds and GFLOP/s of each variant.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "gemm.h"

typedef void (*sgemm_t)(int, int, int, int, int, int, float, const float*, int, const float*,
                        int, float, float*, int);

static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: gemm_ab BLAS REPEATS M N K nt|tn\n");
    return 2;
  }
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  sgemm_t sgemm = lib ? reinterpret_cast<sgemm_t>(dlsym(lib, "cblas_sgemm")) : nullptr;
  if (!sgemm) {
    std::fprintf(stderr, "gemm_ab: no cblas_sgemm in %s\n", argv[1]);
    return 2;
  }
  const int reps = std::atoi(argv[2]), M = std::atoi(argv[3]), N = std::atoi(argv[4]),
            K = std::atoi(argv[5]);
  const bool tn = std::string(argv[6]) == "tn";
  std::vector<float> a(static_cast<size_t>(M) * K), b(static_cast<size_t>(N) * K),
      c(static_cast<size_t>(M) * N), ref(c.size());
  std::vector<float> packed(mxlstm::packed_floats(K, N));
  unsigned seed = 1;
  auto next = [&]() {
    seed = seed * 1664525u + 1013904223u;
    return (seed >> 8) / 16777216.0f - 0.5f;
  };
  for (auto& v : a) v = next();
  for (auto& v : b) v = next();
  const int kRow = 101, kNo = 111, kT = 112;
  std::vector<std::pair<std::string, std::function<void()>>> variants;
  if (!tn) {  // B' given as (N x K): Wh for h Wh'
    variants.push_back({"blas", [&] {
      sgemm(kRow, kNo, kT, M, N, K, 1.f, a.data(), K, b.data(), K, 0.f, c.data(), N); }});
    mxlstm::pack_b(b.data(), K, N, true, packed.data());
    variants.push_back({"packed (B packed once)", [&] {
      mxlstm::packed_gemm(M, N, K, mxlstm::Left{a.data(), K, false}, packed.data(), c.data(),
                          N, false); }});
    variants.push_back({"packed (B packed each call)", [&] {
      mxlstm::pack_b(b.data(), K, N, true, packed.data());
      mxlstm::packed_gemm(M, N, K, mxlstm::Left{a.data(), K, false}, packed.data(), c.data(),
                          N, false); }});
  } else {  // A given as (K x M), B as (K x N): dWh = dG' h'
    variants.push_back({"blas", [&] {
      sgemm(kRow, kT, kNo, M, N, K, 1.f, a.data(), M, b.data(), N, 0.f, c.data(), N); }});
    variants.push_back({"packed (B packed each call)", [&] {
      mxlstm::pack_b(b.data(), K, N, false, packed.data());
      mxlstm::packed_gemm(M, N, K, mxlstm::Left{a.data(), M, true}, packed.data(), c.data(),
                          N, false); }});
  }
  variants[0].second();
  ref = c;
  std::vector<std::vector<double>> times(variants.size());
  double worst = 0.0;
  for (int r = 0; r < reps; ++r) {
    for (size_t v = 0; v < variants.size(); ++v) {
      const double t0 = now();
      variants[v].second();
      times[v].push_back(now() - t0);
      for (size_t i = 0; i < c.size(); ++i)
        worst = std::max(worst, static_cast<double>(std::abs(c[i] - ref[i])));
    }
  }
  const double flops = 2.0 * M * N * K;
  std::printf("{\"m\": %d, \"n\": %d, \"k\": %d, \"form\": \"%s\", \"repeats\": %d, "
              "\"max_abs_diff\": %.3g, \"variants\": [", M, N, K, tn ? "tn" : "nt", reps, worst);
  for (size_t v = 0; v < variants.size(); ++v) {
    std::sort(times[v].begin(), times[v].end());
    const double med = times[v][times[v].size() / 2];
    std::printf("%s{\"name\": \"%s\", \"median_s\": %.6g, \"gflops\": %.1f}", v ? ", " : "",
                variants[v].first.c_str(), med, flops / med / 1e9);
  }
  std::printf("]}\n");
  return 0;
}
