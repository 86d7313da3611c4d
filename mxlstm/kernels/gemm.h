// mxlstm CPU recurrent kernel: matrix products with a packed right-hand side.
//
// The per-step recurrent products (h Wh' forward, dG Wh backward) multiply a new left
// matrix by the SAME weights T times. A general BLAS packs the weights again at every call;
// here they are packed once per layer call into column panels of 16, and every product runs
// an AVX2/FMA register-blocked micro-kernel (6 rows x 16 columns, 12 accumulators) over
// them. The layer's other products (input projection, weight gradients, dx) use it too: it
// needs no separate zeroing pass (BLAS beta = 0) and reads a transposed left matrix in place.
//
// Packed layout of B (k x n): panel p holds columns 16p .. 16p+15, row-major within the
// panel, zero-padded past n: packed[(p * k + kk) * 16 + jj] = B(kk, 16p + jj).
// Without AVX2/FMA (or with -DMXLSTM_NO_PACKED_GEMM) `packed_gemm_built()` is false and the
// caller uses the BLAS.
#pragma once

#include <algorithm>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__) && !defined(MXLSTM_NO_PACKED_GEMM)
#include <immintrin.h>
#define MXLSTM_PACKED_GEMM 1
#endif

namespace mxlstm {

constexpr int kPanel = 16;   // columns per packed panel (two 8-float AVX registers)
constexpr int kRows = 6;     // rows per micro-kernel call
constexpr int kDepth = 256;  // k per pass: one panel slice (16 kB) stays in L1

inline constexpr bool packed_gemm_built() {
#ifdef MXLSTM_PACKED_GEMM
  return true;
#else
  return false;
#endif
}

inline int panels_of(int n) { return (n + kPanel - 1) / kPanel; }
inline long packed_floats(int k, int n) { return static_cast<long>(panels_of(n)) * k * kPanel; }

// A (m x k) read in place: row-major with stride ld (t = false), or the transpose of a
// row-major (k x m) matrix with stride ld (t = true). A(r, kk) = p[r * rs() + kk * cs()].
struct Left {
  const float* p;
  long ld;
  bool t;
  long rs() const { return t ? 1 : ld; }
  long cs() const { return t ? ld : 1; }
};

// Pack B (k x n). `b_rows_are_columns`: the source is stored as B' (n x k, row-major, e.g.
// Wh (GH x H) for C = h Wh'); else as B (k x n, row-major, stride ldb).
// `depth` / `row0`: B is rows row0 .. row0 + k of a packed matrix of `depth` rows (default:
// all of it), so [B1; B2] packs with two calls, e.g. [Wx Wh]' for the step product
// [x_t h] [Wx Wh]'.
inline void pack_b(const float* b, int k, int n, bool b_rows_are_columns, float* packed,
                   long ldb = -1, int depth = -1, int row0 = 0) {
  if (ldb < 0) ldb = b_rows_are_columns ? k : n;
  if (depth < 0) depth = k;
  const int panels = panels_of(n);
#pragma omp parallel for schedule(static) if (static_cast<long>(k) * n > 65536L)
  for (int p = 0; p < panels; ++p) {
    float* dst = packed + (static_cast<long>(p) * depth + row0) * kPanel;
    const int j0 = p * kPanel, width = std::min(kPanel, n - j0);
    if (b_rows_are_columns) {
      for (int jj = 0; jj < width; ++jj) {
        const float* src = b + static_cast<long>(j0 + jj) * ldb;
        for (int kk = 0; kk < k; ++kk) dst[static_cast<long>(kk) * kPanel + jj] = src[kk];
      }
      for (int kk = 0; kk < k; ++kk)
        for (int jj = width; jj < kPanel; ++jj) dst[static_cast<long>(kk) * kPanel + jj] = 0.0f;
    } else {
      for (int kk = 0; kk < k; ++kk) {
        float* row = dst + static_cast<long>(kk) * kPanel;
        std::memcpy(row, b + static_cast<long>(kk) * ldb + j0, sizeof(float) * width);
        for (int jj = width; jj < kPanel; ++jj) row[jj] = 0.0f;
      }
    }
  }
}

#ifdef MXLSTM_PACKED_GEMM
// C[0..MR) x [0..width) (+)= A[0..MR) x panel over k steps.
// Every loop over r is unrolled so that the accumulators stay in registers.
template <int MR>
inline void micro_kernel(int k, const float* a, long rs, long cs, const float* panel,
                         float* c, long ldc, int width, bool accumulate) {
  __m256 lo[MR], hi[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
  for (int kk = 0; kk < k; ++kk) {
    const __m256 b0 = _mm256_loadu_ps(panel + kk * kPanel);
    const __m256 b1 = _mm256_loadu_ps(panel + kk * kPanel + 8);
    const float* ak = a + kk * cs;
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(ak + r * rs);
      lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
      hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
    }
  }
  if (width == kPanel) {
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      float* cr = c + r * ldc;
      if (accumulate) {
        lo[r] = _mm256_add_ps(lo[r], _mm256_loadu_ps(cr));
        hi[r] = _mm256_add_ps(hi[r], _mm256_loadu_ps(cr + 8));
      }
      _mm256_storeu_ps(cr, lo[r]);
      _mm256_storeu_ps(cr + 8, hi[r]);
    }
  } else {
    alignas(32) float tile[kPanel];
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      _mm256_store_ps(tile, lo[r]);
      _mm256_store_ps(tile + 8, hi[r]);
      float* cr = c + r * ldc;
      for (int j = 0; j < width; ++j) cr[j] = accumulate ? cr[j] + tile[j] : tile[j];
    }
  }
}

inline void rows_kernel(int rows, int k, const float* a, long rs, long cs, const float* panel,
                        float* c, long ldc, int width, bool accumulate) {
  switch (rows) {
    case 6: micro_kernel<6>(k, a, rs, cs, panel, c, ldc, width, accumulate); break;
    case 5: micro_kernel<5>(k, a, rs, cs, panel, c, ldc, width, accumulate); break;
    case 4: micro_kernel<4>(k, a, rs, cs, panel, c, ldc, width, accumulate); break;
    case 3: micro_kernel<3>(k, a, rs, cs, panel, c, ldc, width, accumulate); break;
    case 2: micro_kernel<2>(k, a, rs, cs, panel, c, ldc, width, accumulate); break;
    default: micro_kernel<1>(k, a, rs, cs, panel, c, ldc, width, accumulate); break;
  }
}
#endif

// C (m x n, stride ldc) = A B (+ C when `accumulate`), B (k x n) packed by pack_b.
// k goes in passes of kDepth; rows in chunks whose A slice stays in L2 (~128 kB); within a
// chunk each OpenMP thread takes whole column panels (a panel slice stays in L1 while the
// chunk's 6-row blocks pass over it). Threads only when the product pays for waking them.
// (Copying A into contiguous row blocks first, as a BLAS does, measured slower here.)
inline void packed_gemm(int m, int n, int k, Left a, const float* packed, float* c, long ldc,
                        bool accumulate) {
#ifdef MXLSTM_PACKED_GEMM
  if (k == 0 && !accumulate) {
    for (int i = 0; i < m; ++i) std::memset(c + i * ldc, 0, sizeof(float) * n);
  }
  const int panels = panels_of(n);
  const bool threads = static_cast<long>(m) * n * k > 262144L;
  for (int k0 = 0; k0 < k; k0 += kDepth) {
    const int depth = std::min(kDepth, k - k0);
    const bool add = accumulate || k0 > 0;
    const int chunk = std::max(kRows, (32768 / depth) / kRows * kRows);
    for (int i0 = 0; i0 < m; i0 += chunk) {
      const int i1 = std::min(m, i0 + chunk);
#pragma omp parallel for schedule(static) if (threads)
      for (int p = 0; p < panels; ++p) {
        const float* panel = packed + (static_cast<long>(p) * k + k0) * kPanel;
        const int j0 = p * kPanel, width = std::min(kPanel, n - j0);
        for (int i = i0; i < i1; i += kRows)
          rows_kernel(std::min(kRows, i1 - i), depth, a.p + i * a.rs() + k0 * a.cs(), a.rs(),
                      a.cs(), panel, c + i * ldc + j0, ldc, width, add);
      }
    }
  }
#else
  (void)m; (void)n; (void)k; (void)a; (void)packed; (void)c; (void)ldc; (void)accumulate;
#endif
}

}  // namespace mxlstm
