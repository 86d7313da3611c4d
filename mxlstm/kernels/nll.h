// mxlstm CPU kernel: softmax negative log-likelihood over the last axis, fused.
//
// Rows r of logits x (R x K) with labels y (R,): loss_r = lse_r - x_r[y_r], with
// lse_r = log sum_k e^(x_rk) (computed as m + log sum e^(x - m), m the row maximum). The
// gradient is g_r (softmax(x_r) - onehot(y_r)): one pass, where log_softmax + pick in MXNet
// is a dense gradient through pick and a log_softmax backward (~9% of an LM step).
// Labels are floats, truncated to int and clipped to [0, K) (`pick`'s default mode).
// A NaN or +inf logit in a row makes its loss NaN, as log_softmax + pick would; a -inf
// logit (a masked class) counts as probability 0 (e^-87 in the gradient).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cells.h"

namespace mxlstm {

inline int label_index(float y, int K) {
  const int l = static_cast<int>(y);
  return l < 0 ? 0 : (l >= K ? K - 1 : l);
}

// lse of one row; NaN when the row holds a NaN or +inf.
inline float row_lse(const float* x, int K) {
  float m = x[0];
  std::uint32_t special = 0;
#pragma omp simd reduction(max : m) reduction(| : special)
  for (int k = 0; k < K; ++k) {
    std::uint32_t bits;
    std::memcpy(&bits, x + k, sizeof(bits));
    special |= static_cast<std::uint32_t>((bits & 0x7f800000u) == 0x7f800000u &&
                                          bits != 0xff800000u);  // all but -inf
    m = x[k] > m ? x[k] : m;
  }
  if (special) return std::nanf("");
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int k = 0; k < K; ++k) sum += exp_inline(x[k] - m);
  return m + std::log(sum);
}

inline void softmax_nll_forward(const float* x, const float* y, long R, int K, float* loss) {
#pragma omp parallel for schedule(static) if (R * K > 65536L)
  for (long r = 0; r < R; ++r) {
    const float* row = x + r * K;
    loss[r] = row_lse(row, K) - row[label_index(y[r], K)];
  }
}

// dx (R x K) = g_r (softmax(x_r) - onehot(y_r)), written (MXNet's extension API passes no
// gradient request; logits are an intermediate, never accumulated into).
inline void softmax_nll_backward(const float* x, const float* y, const float* g, long R, int K,
                                 float* dx) {
#pragma omp parallel for schedule(static) if (R * K > 65536L)
  for (long r = 0; r < R; ++r) {
    const float* row = x + r * K;
    float* d = dx + r * K;
    const float lse = row_lse(row, K), gr = g[r];
#pragma omp simd
    for (int k = 0; k < K; ++k) d[k] = gr * exp_inline(row[k] - lse);
    d[label_index(y[r], K)] -= gr;
  }
}

}  // namespace mxlstm
