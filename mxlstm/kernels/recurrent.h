// mxlstm CPU recurrent kernel: forward and backward of one (possibly bidirectional) layer.
//
// Layout: x (T, N, C) time-major; per direction Wx (G*H, C), Wh (G*H, H), bx, bh (G*H);
// out (T, N, D*H) (forward units first); states (D, N, H); reserve (D, T, N, K*H) holds
// what backward needs (see cells.h), in time order.
// Variable length: row n runs steps s = 0 .. L_n - 1 at time t = s (forward direction) or
// t = L_n - 1 - s (reverse direction); outputs past L_n are 0, final states are those of
// step L_n - 1 -- exactly as if each sequence ran alone.
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include "cells.h"
#include "gemm.h"

namespace mxlstm {

// C = alpha op(A) op(B) + beta C, row-major; implemented in ops.cc over the loaded BLAS.
void sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc);

struct Shape {
  int T, N, C, H, D, mode, G, K;  // K: reserve floats per row in units of H
  // Which products run on the packed kernel (gemm.h): -1 none (all BLAS); else every
  // per-step product, and the one-off products (B used once) whose B has at most this many
  // columns or at most 64 rows (k): there it measured faster than the BLAS (narrow or
  // shallow B; the BLAS's own packing and zeroing pass dominate), elsewhere slower.
  int packed_max_n;
  int gh() const { return G * H; }
  long rows() const { return static_cast<long>(T) * N; }
  bool step_packed() const { return packed_max_n >= 0; }
  bool once_packed(int k, int n) const {
    return step_packed() && (n <= packed_max_n || k <= 64);
  }
  long step_pack(int k, int n) const { return step_packed() ? packed_floats(k, n) : 0; }
  // LSTM and RNN forward on the packed kernel with a shallow input (C <= 64): the input
  // projection joins the per-step product ([x_t h] [Wx Wh]'), so it is never written out
  // and read back (a projection of depth C is mostly that traffic). A wide input keeps one
  // projection for all steps (an efficient BLAS product; joined, every step would stream
  // twice the weights). GRU's candidate gate needs x Wxn and h Whn apart: always apart.
  bool joint_step() const { return step_packed() && mode != kGRU && C <= 64; }
  long once_pack(int k, int n) const { return once_packed(k, n) ? packed_floats(k, n) : 0; }
};

struct DirParams {
  const float *wx, *wh, *bx, *bh;
};

inline int time_of(int s, int len, bool forward) { return forward ? s : len - 1 - s; }

// Rows in parallel once a step has enough work to pay for waking the threads.
#define MXLSTM_ROWS_PARALLEL _Pragma("omp parallel for schedule(static) if (work > 16384)")

// C (m x n, stride ldc) = A B (+ C when `accumulate`). B is given as (k x n) row-major with
// stride ldb, or as B' (n x k) when `b_rows_are_columns`. With `packed` the product runs on
// the packed kernel, packing B into `space` (packed_floats(k, n)) first unless `prepacked`.
inline void matmul(int m, int n, int k, Left a, const float* b, bool b_rows_are_columns,
                   long ldb, float* c, long ldc, bool accumulate, bool packed, float* space,
                   bool prepacked = false) {
  if (m == 0 || n == 0) return;
  if (packed) {
    if (!prepacked) pack_b(b, k, n, b_rows_are_columns, space, ldb);
    packed_gemm(m, n, k, a, space, c, ldc, accumulate);
    return;
  }
  sgemm(a.t, b_rows_are_columns, m, n, k, 1.0f, a.p, static_cast<int>(a.ld), b,
        static_cast<int>(ldb), accumulate ? 1.0f : 0.0f, c, static_cast<int>(ldc));
}

inline long forward_ws_floats(const Shape& s) {
  const long nh = static_cast<long>(s.N) * s.H, acc = static_cast<long>(s.N) * s.gh();
  if (s.joint_step())
    return nh + static_cast<long>(s.N) * (s.C + s.H) + acc + packed_floats(s.C + s.H, s.gh());
  return 2 * nh + acc + std::max(s.step_pack(s.H, s.gh()), s.once_pack(s.C, s.gh()));
}

// Forward of direction d. ws: forward_ws_floats(s).
inline void forward_dir(const Shape& s, int d, const float* x, const DirParams& p,
                        const float* h0, const float* c0, const std::vector<int>& len,
                        float* out, float* hN, float* cN, float* reserve, float* ws) {
  const int N = s.N, H = s.H, GH = s.gh(), RH = s.K * H, DH = s.D * H, C = s.C;
  const bool fwd = d == 0, joint = s.joint_step();
  const long work = static_cast<long>(N) * GH;
  float* R = reserve + static_cast<long>(d) * s.rows() * RH;
  // h rows: alone (N, H), or beside x_t in the joint step's left matrix (N, C + H)
  const int K = joint ? C + H : H, lh = K;
  float* c = ws;
  float* left = c + static_cast<long>(N) * H;
  float* h = left + (joint ? C : 0);
  float* acc = left + static_cast<long>(N) * K;
  float* space = acc + static_cast<long>(N) * GH;
  if (joint) {
    pack_b(p.wx, C, GH, true, space, C, K, 0);  // [Wx Wh]', K = C + H rows
    pack_b(p.wh, H, GH, true, space, H, K, C);
  } else {  // one input projection for all steps, written into the reserve rows
    matmul(s.T * N, GH, C, Left{x, C, false}, p.wx, true, C, R, RH, false,
           s.once_packed(C, GH), space);
    if (s.step_packed()) pack_b(p.wh, H, GH, true, space);  // for every step
  }
  for (int n = 0; n < N; ++n) {
    std::memcpy(h + static_cast<long>(n) * lh, h0 + (static_cast<long>(d) * N + n) * H,
                sizeof(float) * H);
  }
  if (s.mode == kLSTM) std::memcpy(c, c0 + static_cast<long>(d) * N * H, sizeof(float) * N * H);
  for (int step = 0; step < s.T; ++step) {
    if (joint) {  // x_t of each row (its own time in the reverse direction) beside its h
      for (int n = 0; n < N; ++n) {
        float* dst = left + static_cast<long>(n) * K;
        if (step < len[n])
          std::memcpy(dst, x + (static_cast<long>(time_of(step, len[n], fwd)) * N + n) * C,
                      sizeof(float) * C);
        else
          std::memset(dst, 0, sizeof(float) * C);
      }
    }
    matmul(N, GH, K, Left{left, K, false}, p.wh, true, H, acc, GH, false, s.step_packed(),
           space, true);
    MXLSTM_ROWS_PARALLEL
    for (int n = 0; n < N; ++n) {
      if (step >= len[n]) continue;
      const long row = static_cast<long>(time_of(step, len[n], fwd)) * N + n;
      float* keep = R + row * RH;
      const float* proj = joint ? nullptr : keep;
      float* o = out + row * DH + d * H;
      float* hn = h + static_cast<long>(n) * lh;
      if (s.mode == kLSTM)
        lstm_fwd(H, proj, acc + n * GH, p.bx, p.bh, hn, c + n * H, keep, o);
      else if (s.mode == kGRU)
        gru_fwd(H, proj, acc + n * GH, p.bx, p.bh, hn, keep, o);
      else
        rnn_fwd(H, s.mode == kRNNRelu, proj, acc + n * GH, p.bx, p.bh, hn, keep, o);
    }
  }
  for (int n = 0; n < N; ++n) {  // padding: zero outputs and reserve rows
    for (int t = len[n]; t < s.T; ++t) {
      const long row = static_cast<long>(t) * N + n;
      std::memset(out + row * DH + d * H, 0, sizeof(float) * H);
      std::memset(R + row * RH, 0, sizeof(float) * RH);
    }
    std::memcpy(hN + (static_cast<long>(d) * N + n) * H, h + static_cast<long>(n) * lh,
                sizeof(float) * H);
  }
  if (s.mode == kLSTM) std::memcpy(cN + static_cast<long>(d) * N * H, c, sizeof(float) * N * H);
}

struct DirGrads {
  float *dwx, *dwh, *dbx, *dbh;
};

// out (cols) (+)= sums over the rows of a (rows x cols); column blocks of 64 on threads.
inline void column_sums(const float* a, long rows, int cols, float* out, bool accumulate) {
  const int blocks = (cols + 63) / 64;
#pragma omp parallel for schedule(static) if (rows * cols > 262144L)
  for (int b = 0; b < blocks; ++b) {
    const int j0 = b * 64, j1 = std::min(cols, j0 + 64);
    float* o = out + j0;
    if (!accumulate) std::fill(o, o + (j1 - j0), 0.0f);
    for (long r = 0; r < rows; ++r) {
      const float* row = a + r * cols + j0;
#pragma omp simd
      for (int j = 0; j < j1 - j0; ++j) o[j] += row[j];
    }
  }
}

// Backward runs the steps in chunks of `chunk_steps` (about 1024 rows): the gradients of a
// chunk's pre-activations are kept only until the chunk's weight-gradient products
// (dWh, dWx, dx, biases) have used them, so the workspace does not grow with T.
inline int chunk_steps(const Shape& s) {
  return std::max(1, std::min(s.T, 1024 / std::max(s.N, 1)));
}

// Rows of the last chunk backward runs (steps [0, s1)): T mod chunk_steps, or a whole chunk.
inline int last_chunk_rows(const Shape& s) {
  const int S = chunk_steps(s), rest = s.T % S;
  return (rest ? rest : S) * s.N;
}

// Space for the packed right-hand side of one chunk's one-off products (dWh, dWx, dx).
// Whether a product is packed depends on its depth (rows <= 64 are), so a short last chunk
// can be packed where a whole one is not: both sizes count.
inline long chunk_pack_floats(const Shape& s) {
  long most = s.once_pack(s.gh(), s.C);
  for (int r : {static_cast<int>(chunk_steps(s)) * s.N, last_chunk_rows(s)})
    most = std::max({most, s.once_pack(r, s.H), s.once_pack(r, s.C)});
  return most;
}

inline long backward_ws_floats(const Shape& s) {
  const long rows = static_cast<long>(chunk_steps(s)) * s.N;
  return rows * s.gh() * (s.mode == kGRU ? 2 : 1) + rows * (s.H + 2L * s.C) + 4L * s.N * s.H +
         s.step_pack(s.gh(), s.H) + chunk_pack_floats(s);
}

// Backward of direction d. dout/dhN/dcN may be null (zero gradient); so may any output
// gradient (not requested). dx is accumulated when `accumulate_dx`. ws .. ws_end: the
// workspace (backward_ws_floats); false (nothing written past it) if a product would not fit.
// Chunk buffers are indexed by (step - first step of the chunk, n), so one step's rows are
// contiguous with or without lengths; x, h' and dx rows are gathered / scattered by time.
inline bool backward_dir(const Shape& s, int d, const float* x, const DirParams& p,
                         const float* h0, const float* c0, const std::vector<int>& len,
                         const float* out, const float* reserve, const float* dout,
                         const float* dhN, const float* dcN, float* dx, bool accumulate_dx,
                         const DirGrads& g, float* dh0, float* dc0, float* ws,
                         const float* ws_end) {
  const int N = s.N, H = s.H, GH = s.gh(), RH = s.K * H, DH = s.D * H, T = s.T, C = s.C;
  const bool fwd = d == 0, lstm = s.mode == kLSTM, gru = s.mode == kGRU;
  const long tn = s.rows(), nh = static_cast<long>(N) * H, work = static_cast<long>(N) * GH;
  const int S = chunk_steps(s);
  const long crows = static_cast<long>(S) * N;
  const float* R = reserve + static_cast<long>(d) * tn * RH;
  const float* hinit = h0 + d * nh;
  const float* cinit = lstm ? c0 + d * nh : nullptr;
  float* dA = ws;                                  // (S, N, GH) input-side gradients
  float* dG = gru ? dA + crows * GH : dA;          // recurrent-side gradients
  float* hp = (gru ? dG : dA) + crows * GH;        // (S, N, H) previous h, gathered
  float* xg = hp + crows * H;                      // (S, N, C) x, gathered
  float* dxg = xg + crows * C;                     // (S, N, C) dx of the chunk
  float* dh = dxg + crows * C;
  float* dc = dh + nh;
  float* dtmp = dc + nh;
  float* gin = dtmp + nh;
  float* step_space = gin + nh;  // Wh packed for every step's product
  float* space = step_space + s.step_pack(GH, H);  // the chunks' one-off products
  if (s.step_packed()) pack_b(p.wh, GH, H, false, step_space);
  // time row of (step, n), or -1 on padding
  auto row_of = [&](int step, int n) -> long {
    return step < len[n] ? static_cast<long>(time_of(step, len[n], fwd)) * N + n : -1L;
  };
  if (dhN) std::memcpy(dh, dhN + d * nh, sizeof(float) * nh);
  else std::memset(dh, 0, sizeof(float) * nh);
  if (dcN) std::memcpy(dc, dcN + d * nh, sizeof(float) * nh);
  else std::memset(dc, 0, sizeof(float) * nh);
  if (dx && !accumulate_dx) {  // padding rows of dx get no chunk row
    for (int n = 0; n < N; ++n)
      for (int t = len[n]; t < T; ++t)
        std::memset(dx + (static_cast<long>(t) * N + n) * C, 0, sizeof(float) * C);
  }
  bool first_chunk = true;
  for (int s1 = T; s1 > 0; s1 -= S) {
    const int s0 = std::max(0, s1 - S);
    for (int step = s1 - 1; step >= s0; --step) {
      float* rows_g = dG + static_cast<long>(step - s0) * N * GH;
      float* rows_a = dA + static_cast<long>(step - s0) * N * GH;
      MXLSTM_ROWS_PARALLEL
      for (int n = 0; n < N; ++n) {
        const long crow = static_cast<long>(step - s0) * N + n;
        float* rg = rows_g + static_cast<long>(n) * GH;
        const long row = row_of(step, n);
        if (row < 0) {
          std::memset(rg, 0, sizeof(float) * GH);
          if (gru) std::memset(rows_a + static_cast<long>(n) * GH, 0, sizeof(float) * GH);
          std::memset(hp + crow * H, 0, sizeof(float) * H);
          std::memset(xg + crow * C, 0, sizeof(float) * C);
          continue;
        }
        const long prev = step > 0 ? row_of(step - 1, n) : -1L;
        const float* hprev = prev >= 0 ? out + prev * DH + d * H : hinit + n * H;
        std::memcpy(hp + crow * H, hprev, sizeof(float) * H);
        std::memcpy(xg + crow * C, x + row * C, sizeof(float) * C);
        const float* keep = R + row * RH;
        float* gi = gin + static_cast<long>(n) * H;
        const float* dhn = dh + static_cast<long>(n) * H;
        if (dout) {
          const float* dor = dout + row * DH + d * H;
#pragma omp simd
          for (int j = 0; j < H; ++j) gi[j] = dhn[j] + dor[j];
        } else {
          std::memcpy(gi, dhn, sizeof(float) * H);
        }
        if (lstm) {
          const float* cprev = prev >= 0 ? R + prev * RH + 4 * H : cinit + n * H;
          lstm_bwd(H, keep, cprev, gi, dc + static_cast<long>(n) * H, rg);
        } else if (gru) {
          gru_bwd(H, keep, hprev, gi, rows_a + static_cast<long>(n) * GH, rg,
                  dh + static_cast<long>(n) * H);
        } else {
          rnn_bwd(H, s.mode == kRNNRelu, keep, gi, rg);
        }
      }
      matmul(N, H, GH, Left{rows_g, GH, false}, p.wh, false, H, dtmp, H, false,
             s.step_packed(), step_space, true);
      MXLSTM_ROWS_PARALLEL
      for (int n = 0; n < N; ++n) {
        if (step >= len[n]) continue;
        float* dhn = dh + static_cast<long>(n) * H;
        const float* t = dtmp + static_cast<long>(n) * H;
        if (gru) {
#pragma omp simd
          for (int j = 0; j < H; ++j) dhn[j] += t[j];
        } else {
          std::memcpy(dhn, t, sizeof(float) * H);
        }
      }
    }
    // the chunk's weight-gradient products, accumulated over chunks
    const int rows = (s1 - s0) * N;
    const bool acc = !first_chunk;
    for (int n : {H, C}) {  // never pack past the workspace (backward_ws_floats sizes it)
      if (s.once_packed(rows, n) && space + packed_floats(rows, n) > ws_end) return false;
    }
    if (s.once_packed(GH, C) && space + packed_floats(GH, C) > ws_end) return false;
    if (g.dwh)
      matmul(GH, H, rows, Left{dG, GH, true}, hp, false, H, g.dwh, H, acc,
             s.once_packed(rows, H), space);
    if (g.dwx)
      matmul(GH, C, rows, Left{dA, GH, true}, xg, false, C, g.dwx, C, acc,
             s.once_packed(rows, C), space);
    if (dx) {
      matmul(rows, C, GH, Left{dA, GH, false}, p.wx, false, C, dxg, C, false,
             s.once_packed(GH, C), space);
      for (int step = s0; step < s1; ++step) {
        for (int n = 0; n < N; ++n) {
          const long row = row_of(step, n);
          if (row < 0) continue;
          float* dst = dx + row * C;
          const float* src = dxg + (static_cast<long>(step - s0) * N + n) * C;
          if (accumulate_dx) {
#pragma omp simd
            for (int j = 0; j < C; ++j) dst[j] += src[j];
          } else {
            std::memcpy(dst, src, sizeof(float) * C);
          }
        }
      }
    }
    if (g.dbx) column_sums(dA, rows, GH, g.dbx, acc);
    if (g.dbh && g.dbx && dG == dA) std::memcpy(g.dbh, g.dbx, sizeof(float) * GH);  // LSTM, RNN
    else if (g.dbh) column_sums(dG, rows, GH, g.dbh, acc);
    first_chunk = false;
  }
  if (first_chunk) {  // T = 0: no step ran, so the weight gradients are 0
    if (g.dwh) std::memset(g.dwh, 0, sizeof(float) * GH * H);
    if (g.dwx) std::memset(g.dwx, 0, sizeof(float) * GH * C);
    if (g.dbx) std::memset(g.dbx, 0, sizeof(float) * GH);
    if (g.dbh) std::memset(g.dbh, 0, sizeof(float) * GH);
  }
  if (dh0) std::memcpy(dh0 + d * nh, dh, sizeof(float) * nh);
  if (dc0 && lstm) std::memcpy(dc0 + d * nh, dc, sizeof(float) * nh);
  return true;
}

}  // namespace mxlstm
