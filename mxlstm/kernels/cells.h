// mxlstm CPU recurrent kernel: the pointwise gate math of one step for one batch row.
//
// Gate order and equations are MXNet's fused RNN operator's (and cuDNN's):
//   LSTM  a = x Wx' + bx + h Wh' + bh = [i f g o];  c = s(f) c' + s(i) tanh(g);  h = s(o) tanh(c)
//   GRU   r = s(.), z = s(.), n = tanh(xn + bxn + r * (h Wn' + bhn));  h = (1 - z) n + z h'
//   RNN   h = tanh(a) or relu(a)
// Each function handles one row of H units; the caller runs rows in parallel. In the
// forward functions `proj` and `keep` may be the same memory (each unit j is read, then
// written), so they are not restrict-qualified.
// `proj` is the row's input projection x Wx' (without bias), `rec` its h Wh' (without bias);
// LSTM and RNN also take proj = null with `rec` = x Wx' + h Wh' (one product per step).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace mxlstm {

enum Mode { kLSTM = 0, kGRU = 1, kRNNTanh = 2, kRNNRelu = 3 };

inline int gates_of(int mode) { return mode == kLSTM ? 4 : (mode == kGRU ? 3 : 1); }
// floats per (t, n) row the forward pass keeps for backward, in units of H
inline int reserve_of(int mode) { return mode == kLSTM ? 5 : (mode == kGRU ? 4 : 1); }

// exp without a library call, so that `omp simd` loops vectorise it inline: e^x = 2^n e^f
// with n = round(x / ln 2) and f = x - n ln 2 (ln 2 split in two for exactness), e^f - 1 =
// f q(f) by a degree-7 Taylor polynomial (|f| <= ln 2 / 2: relative error < 1e-7, about
// float's own). x is clamped to [-87, 88], where e^x stays a normal float; a NaN stays NaN
// (clamp_keep_nan; the build keeps IEEE NaN semantics: -fno-finite-math-only), so a NaN
// input or weight gives NaN outputs and a NaN loss, as MXNet's operator does.
// Returns e^x - 1 (`minus_one`) or e^x; e^x - 1 = 2^n f q + (2^n - 1) keeps its relative
// accuracy near x = 0, where 1 - ... forms would cancel.
// x clamped to [lo, hi]; NaN compares false both ways and passes through (std::fmin/fmax
// would turn it into a bound).
static inline float clamp_keep_nan(float x, float lo, float hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

static inline float exp_inline(float x, bool minus_one = false) {
  x = clamp_keep_nan(x, -87.0f, 88.0f);
  const float n = std::nearbyint(x * 1.44269504088896341f);
  const float f = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  float q = 1.0f / 5040.0f;
  q = q * f + 1.0f / 720.0f;
  q = q * f + 1.0f / 120.0f;
  q = q * f + 1.0f / 24.0f;
  q = q * f + 1.0f / 6.0f;
  q = q * f + 0.5f;
  q = q * f + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return minus_one ? scale * (f * q) + (scale - 1.0f) : scale * (f * q + 1.0f);
}

static inline float sigm(float a) { return 1.0f / (1.0f + exp_inline(-a)); }
// tanh a = m / (m + 2) with m = e^(2a) - 1: relative error ~1e-7 for every a. |a| is
// clamped to 9 (tanh 9 rounds to 1 in float), so m + 2 stays far from where a vectorised
// division's reciprocal would flush to 0.
static inline float tanh_inline(float a) {
  const float m = exp_inline(2.0f * clamp_keep_nan(a, -9.0f, 9.0f), true);
  return m / (m + 2.0f);
}

// LSTM forward. keep = [i f g o c] (activated gates, new cell); h, c updated in place.
inline void lstm_fwd(int H, const float* proj, const float* __restrict rec,
                     const float* __restrict bx, const float* __restrict bh,
                     float* __restrict h, float* __restrict c, float* keep,
                     float* __restrict out) {
  float* ig = keep;
  float* fg = keep + H;
  float* gg = keep + 2 * H;
  float* og = keep + 3 * H;
  float* cn = keep + 4 * H;
  if (proj) {
#pragma omp simd
    for (int j = 0; j < 4 * H; ++j) keep[j] = proj[j] + rec[j] + bx[j] + bh[j];
  } else {
#pragma omp simd
    for (int j = 0; j < 4 * H; ++j) keep[j] = rec[j] + bx[j] + bh[j];
  }
#pragma omp simd
  for (int j = 0; j < H; ++j) {
    ig[j] = sigm(ig[j]);
    fg[j] = sigm(fg[j]);
    gg[j] = tanh_inline(gg[j]);
    og[j] = sigm(og[j]);
    float cv = fg[j] * c[j] + ig[j] * gg[j];
    cn[j] = cv;
    c[j] = cv;
    float hv = og[j] * tanh_inline(cv);
    h[j] = hv;
    out[j] = hv;
  }
}

// LSTM backward. dh: gradient reaching h of this step (output + later steps); dc in/out:
// gradient of c (in: from later steps, out: towards c'); cp: c of the previous step.
// da = gradient of the pre-activations [i f g o].
inline void lstm_bwd(int H, const float* __restrict keep, const float* __restrict cp,
                     const float* __restrict dh, float* __restrict dc, float* __restrict da) {
  const float* ig = keep;
  const float* fg = keep + H;
  const float* gg = keep + 2 * H;
  const float* og = keep + 3 * H;
  const float* cn = keep + 4 * H;
#pragma omp simd
  for (int j = 0; j < H; ++j) {
    float tc = tanh_inline(cn[j]);
    float dcv = dc[j] + dh[j] * og[j] * (1.0f - tc * tc);
    da[j] = dcv * gg[j] * ig[j] * (1.0f - ig[j]);
    da[H + j] = dcv * cp[j] * fg[j] * (1.0f - fg[j]);
    da[2 * H + j] = dcv * ig[j] * (1.0f - gg[j] * gg[j]);
    da[3 * H + j] = dh[j] * tc * og[j] * (1.0f - og[j]);
    dc[j] = dcv * fg[j];
  }
}

// GRU forward. keep = [r z n hn] with hn = h' Wn' + bhn.
inline void gru_fwd(int H, const float* proj, const float* __restrict rec,
                    const float* __restrict bx, const float* __restrict bh,
                    float* __restrict h, float* keep, float* __restrict out) {
  float* rg = keep;
  float* zg = keep + H;
  float* ng = keep + 2 * H;
  float* hn = keep + 3 * H;
#pragma omp simd
  for (int j = 0; j < H; ++j) {
    float r = sigm(proj[j] + bx[j] + rec[j] + bh[j]);
    float z = sigm(proj[H + j] + bx[H + j] + rec[H + j] + bh[H + j]);
    float hv = rec[2 * H + j] + bh[2 * H + j];
    float n = tanh_inline(proj[2 * H + j] + bx[2 * H + j] + r * hv);
    rg[j] = r;
    zg[j] = z;
    ng[j] = n;
    hn[j] = hv;
    float hnew = (1.0f - z) * n + z * h[j];
    h[j] = hnew;
    out[j] = hnew;
  }
}

// GRU backward. dgi: gradient of the input-side pre-activations, dgh: of the recurrent
// side (h' Wh' + bh); dhp: the direct part of the gradient towards h' (dh * z).
inline void gru_bwd(int H, const float* __restrict keep, const float* __restrict hp,
                    const float* __restrict dh, float* __restrict dgi, float* __restrict dgh,
                    float* __restrict dhp) {
  const float* rg = keep;
  const float* zg = keep + H;
  const float* ng = keep + 2 * H;
  const float* hn = keep + 3 * H;
#pragma omp simd
  for (int j = 0; j < H; ++j) {
    float z = zg[j], n = ng[j], r = rg[j];
    float dn = dh[j] * (1.0f - z) * (1.0f - n * n);
    float dz = dh[j] * (hp[j] - n) * z * (1.0f - z);
    float dr = dn * hn[j] * r * (1.0f - r);
    dgi[j] = dr;
    dgi[H + j] = dz;
    dgi[2 * H + j] = dn;
    dgh[j] = dr;
    dgh[H + j] = dz;
    dgh[2 * H + j] = dn * r;
    dhp[j] = dh[j] * z;
  }
}

// Plain RNN forward; keep = [h].
inline void rnn_fwd(int H, bool relu, const float* proj, const float* __restrict rec,
                    const float* __restrict bx, const float* __restrict bh,
                    float* __restrict h, float* keep, float* __restrict out) {
#pragma omp simd
  for (int j = 0; j < H; ++j) {
    float a = (proj ? proj[j] : 0.0f) + rec[j] + bx[j] + bh[j];
    float v = relu ? (a > 0.0f ? a : 0.0f) : tanh_inline(a);
    keep[j] = v;
    h[j] = v;
    out[j] = v;
  }
}

inline void rnn_bwd(int H, bool relu, const float* __restrict keep, const float* __restrict dh,
                    float* __restrict da) {
#pragma omp simd
  for (int j = 0; j < H; ++j) {
    float v = keep[j];
    da[j] = relu ? (v > 0.0f ? dh[j] : 0.0f) : dh[j] * (1.0f - v * v);
  }
}

}  // namespace mxlstm
