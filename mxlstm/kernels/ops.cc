// mxlstm CPU recurrent kernel: the MXNet extension operator `mxlstm_rnn`.
//
// Attributes: mode (lstm | gru | rnn_tanh | rnn_relu), state_size (H), bidirectional (0/1),
// use_lengths (0/1).
// Inputs:  x (T, N, C); per direction Wx, Wh, bx, bh; h0 (D, N, H); [c0 (D, N, H) for lstm];
//          [lengths (N,) float when use_lengths].
// Outputs: out (T, N, D*H); hN (D, N, H); [cN (D, N, H)].
// A stateful operator: what backward needs, the reserve (D, T, N, K*H), stays in the op's
// state between forward and backward (MXNet shares one state between the two nodes), not
// an output -- so MXNet neither allocates it per call nor zero-fills a gradient for it.
// Backward receives (output gradients, inputs, outputs) and writes the input gradients.
// Attribute gemm (auto | blas | packed): which matrix products run on the packed AVX2/FMA
// kernel of gemm.h (where it is built): auto = every per-step product and the one-off ones
// with at most 32 output columns or a depth of at most 64 (see mxlstm::Shape); blas = none;
// packed = all. The BLAS sgemm is resolved at
// load time from MXLSTM_KERNEL_BLAS (a shared library path) and MXLSTM_KERNEL_BLAS_SYMBOL
// (cblas_sgemm, or cblas_sgemm64_ for an ILP64 build).
#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "mxnet/lib_api.h"
#include "recurrent.h"

using namespace mxnet::ext;  // NOLINT
using Attrs = std::unordered_map<std::string, std::string>;

namespace {
typedef void (*sgemm32_t)(int, int, int, int, int, int, float, const float*, int,
                          const float*, int, float, float*, int);
typedef void (*sgemm64_t)(long, long, long, long, long, long, float, const float*, long,
                          const float*, long, float, float*, long);
sgemm32_t g_sgemm32 = nullptr;
sgemm64_t g_sgemm64 = nullptr;
const int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

struct Op {
  int mode = mxlstm::kLSTM, H = 0, D = 1;
  int packed_max_n = -1;  // see mxlstm::Shape
  bool lengths = false;
  int states() const { return mode == mxlstm::kLSTM ? 2 : 1; }
  int num_in() const { return 1 + 4 * D + states() + (lengths ? 1 : 0); }
  int num_out() const { return 1 + states(); }
};

bool parse(const Attrs& attrs, Op* op) {
  auto get = [&](const char* key, const char* fallback) {
    auto it = attrs.find(key);
    return it == attrs.end() ? std::string(fallback) : it->second;
  };
  std::string mode = get("mode", "lstm");
  if (mode == "lstm") op->mode = mxlstm::kLSTM;
  else if (mode == "gru") op->mode = mxlstm::kGRU;
  else if (mode == "rnn_tanh") op->mode = mxlstm::kRNNTanh;
  else if (mode == "rnn_relu") op->mode = mxlstm::kRNNRelu;
  else return false;
  op->H = std::atoi(get("state_size", "0").c_str());
  op->D = get("bidirectional", "0") == "1" || get("bidirectional", "0") == "True" ? 2 : 1;
  op->lengths = get("use_lengths", "0") == "1" || get("use_lengths", "0") == "True";
  const std::string gemm = get("gemm", "auto");
  const bool built = mxlstm::packed_gemm_built();
  if (gemm == "auto") op->packed_max_n = built ? 32 : -1;
  else if (gemm == "packed") op->packed_max_n = built ? 1 << 30 : -1;
  else if (gemm == "blas") op->packed_max_n = -1;
  else return false;
  return op->H > 0;
}
}  // namespace

namespace mxlstm {
void sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // C = beta C
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) c[static_cast<long>(i) * ldc + j] *= beta;
    return;
  }
  const int opa = ta ? kTrans : kNoTrans, opb = tb ? kTrans : kNoTrans;
  if (g_sgemm64)
    g_sgemm64(kRowMajor, opa, opb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else
    g_sgemm32(kRowMajor, opa, opb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
}  // namespace mxlstm

namespace {
MXReturnValue parseAttrs(const Attrs& attrs, int* num_in, int* num_out) {
  Op op;
  if (!parse(attrs, &op)) {
    MX_ERROR_MSG << "mxlstm_rnn: bad attributes (mode, state_size, gemm)";
    return MX_FAIL;
  }
  *num_in = op.num_in();
  *num_out = op.num_out();
  return MX_SUCCESS;
}

MXReturnValue inferType(const Attrs& attrs, std::vector<int>* in, std::vector<int>* out) {
  for (size_t i = 0; i < in->size(); ++i) {
    if (in->at(i) != kFloat32 && in->at(i) != -1) {
      MX_ERROR_MSG << "mxlstm_rnn: input " << i << " must be float32";
      return MX_FAIL;
    }
    in->at(i) = kFloat32;
  }
  for (auto& t : *out) t = kFloat32;
  return MX_SUCCESS;
}

MXReturnValue inferShape(const Attrs& attrs, std::vector<std::vector<unsigned int>>* in,
                         std::vector<std::vector<unsigned int>>* out) {
  Op op;
  parse(attrs, &op);
  const auto& x = in->at(0);
  if (x.size() != 3) {
    MX_ERROR_MSG << "mxlstm_rnn: x must be (T, N, C)";
    return MX_FAIL;
  }
  const unsigned T = x[0], N = x[1], C = x[2], H = op.H, D = op.D;
  const unsigned GH = mxlstm::gates_of(op.mode) * H;
  auto want = [&](size_t i, std::vector<unsigned int> shape) {
    auto& got = in->at(i);
    bool fits = got.empty() || got.size() == shape.size();
    for (size_t k = 0; fits && k < got.size(); ++k)  // 0 and -1: unknown (deferred init)
      fits = got[k] == shape[k] || got[k] == 0 || got[k] == 0xFFFFFFFFu;
    if (!fits) {
      MX_ERROR_MSG << "mxlstm_rnn: input " << i << " has the wrong shape";
      return false;
    }
    got = shape;
    return true;
  };
  bool ok = true;
  for (unsigned d = 0; d < D; ++d) {
    ok = ok && want(1 + 4 * d, {GH, C}) && want(2 + 4 * d, {GH, H}) &&
         want(3 + 4 * d, {GH}) && want(4 + 4 * d, {GH});
  }
  for (int k = 0; k < op.states(); ++k) ok = ok && want(1 + 4 * D + k, {D, N, H});
  if (op.lengths) ok = ok && want(1 + 4 * D + op.states(), {N});
  if (!ok) return MX_FAIL;
  out->at(0) = {T, N, D * H};
  for (int k = 0; k < op.states(); ++k) out->at(1 + k) = {D, N, H};
  return MX_SUCCESS;
}

mxlstm::Shape shape_of(const Op& op, const MXTensor& x) {
  mxlstm::Shape s;
  s.T = static_cast<int>(x.shape[0]);
  s.N = static_cast<int>(x.shape[1]);
  s.C = static_cast<int>(x.shape[2]);
  s.H = op.H;
  s.D = op.D;
  s.mode = op.mode;
  s.G = mxlstm::gates_of(op.mode);
  s.K = mxlstm::reserve_of(op.mode);
  s.packed_max_n = op.packed_max_n;
  return s;
}

std::vector<int> lengths_of(const Op& op, const mxlstm::Shape& s, std::vector<MXTensor>* in,
                            size_t index) {
  std::vector<int> len(s.N, s.T);
  if (!op.lengths) return len;
  const float* l = in->at(index).data<float>();
  for (int n = 0; n < s.N; ++n) len[n] = std::max(0, std::min(s.T, static_cast<int>(l[n])));
  return len;
}

float* ptr(MXTensor& t) { return t.data_ptr ? t.data<float>() : nullptr; }

float* workspace(const OpResource& res, long floats, const char* pass) {
  if (floats * static_cast<long>(sizeof(float)) > 0x7fffffffL) {
    MX_ERROR_MSG << "mxlstm_rnn: " << pass << " workspace over 2 GiB; use a smaller batch or T";
    return nullptr;
  }
  return static_cast<float*>(res.alloc_cpu(static_cast<int>(floats * sizeof(float))));
}

// Reserve buffers outlive the states that use them: MXNet creates a new state for every
// call of a graph that is not static_shape, and a fresh multi-MB buffer each time would cost
// page faults on every step. A state takes a buffer from this pool and returns it when
// MXNet destroys the state (after backward, or after an inference call).
class BufferPool {
 public:
  std::vector<float> take(size_t floats) {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t best = free_.size();
    for (size_t i = 0; i < free_.size(); ++i) {  // the smallest that fits
      if (free_[i].capacity() >= floats &&
          (best == free_.size() || free_[i].capacity() < free_[best].capacity()))
        best = i;
    }
    std::vector<float> buffer;
    if (best < free_.size()) {
      buffer.swap(free_[best]);
      free_.erase(free_.begin() + static_cast<long>(best));
    }
    buffer.resize(floats);
    return buffer;
  }

  void give(std::vector<float>* buffer) {
    if (buffer->capacity() == 0) return;
    std::lock_guard<std::mutex> lock(mutex_);
    free_.emplace_back();
    free_.back().swap(*buffer);
    if (free_.size() > kKeep) free_.erase(free_.begin());  // the oldest goes
  }

 private:
  static constexpr size_t kKeep = 8;
  std::mutex mutex_;
  std::vector<std::vector<float>> free_;
};

BufferPool& reserve_pool() {
  static BufferPool* pool = new BufferPool();  // never destroyed: states may outlive exit
  return *pool;
}

class RnnState : public CustomStatefulOp {
 public:
  explicit RnnState(const Op& op) : op_(op) {}
  ~RnnState() override { reserve_pool().give(&reserve_); }

  MXReturnValue Forward(std::vector<MXTensor>* in, std::vector<MXTensor>* out,
                        const OpResource& res) override {
    const Op& op = op_;
    const mxlstm::Shape s = shape_of(op, in->at(0));
    const size_t hi = 1 + 4 * op.D;
    const float* c0 = op.mode == mxlstm::kLSTM ? ptr(in->at(hi + 1)) : nullptr;
    std::vector<int> len = lengths_of(op, s, in, hi + op.states());
    float* cN = op.mode == mxlstm::kLSTM ? ptr(out->at(2)) : nullptr;
    const size_t floats = static_cast<size_t>(s.D) * s.rows() * s.K * s.H;
    if (reserve_.capacity() < floats) {
      reserve_pool().give(&reserve_);
      reserve_ = reserve_pool().take(floats);
    }
    reserve_.resize(floats);
    float* ws = workspace(res, mxlstm::forward_ws_floats(s), "forward");
    if (!ws) return MX_FAIL;
    for (int d = 0; d < s.D; ++d) {
      mxlstm::DirParams p{ptr(in->at(1 + 4 * d)), ptr(in->at(2 + 4 * d)),
                          ptr(in->at(3 + 4 * d)), ptr(in->at(4 + 4 * d))};
      mxlstm::forward_dir(s, d, ptr(in->at(0)), p, ptr(in->at(hi)), c0, len, ptr(out->at(0)),
                          ptr(out->at(1)), cN, reserve_.data(), ws);
    }
    return MX_SUCCESS;
  }

  MXReturnValue Backward(std::vector<MXTensor>* in, std::vector<MXTensor>* out,
                         const OpResource& res) override {
    const Op& op = op_;
    const size_t no = op.num_out(), ni = op.num_in();  // in = [ograds, inputs, outputs]
    std::vector<MXTensor>& v = *in;
    const mxlstm::Shape s = shape_of(op, v[no]);
    if (reserve_.size() != static_cast<size_t>(s.D) * s.rows() * s.K * s.H) {
      MX_ERROR_MSG << "mxlstm_rnn: backward without a matching forward";
      return MX_FAIL;
    }
    const bool lstm = op.mode == mxlstm::kLSTM;
    const size_t hi = 1 + 4 * op.D;
    std::vector<int> len = lengths_of(op, s, in, no + hi + op.states());
    const float* dcN = lstm ? ptr(v[2]) : nullptr;
    const float* c0 = lstm ? ptr(v[no + hi + 1]) : nullptr;
    const float* outs = ptr(v[no + ni]);
    float* dx = ptr(out->at(0));
    const long ws_floats = mxlstm::backward_ws_floats(s);
    float* ws = workspace(res, ws_floats, "backward");
    if (!ws) return MX_FAIL;
    for (int d = 0; d < s.D; ++d) {
      mxlstm::DirParams p{ptr(v[no + 1 + 4 * d]), ptr(v[no + 2 + 4 * d]),
                          ptr(v[no + 3 + 4 * d]), ptr(v[no + 4 + 4 * d])};
      mxlstm::DirGrads g{ptr(out->at(1 + 4 * d)), ptr(out->at(2 + 4 * d)),
                         ptr(out->at(3 + 4 * d)), ptr(out->at(4 + 4 * d))};
      if (!mxlstm::backward_dir(s, d, ptr(v[no]), p, ptr(v[no + hi]), c0, len, outs,
                                reserve_.data(), ptr(v[0]), ptr(v[1]), dcN, dx, d > 0, g,
                                ptr(out->at(hi)), lstm ? ptr(out->at(hi + 1)) : nullptr, ws,
                                ws + ws_floats)) {
        MX_ERROR_MSG << "mxlstm_rnn: internal error: backward workspace too small for T="
                     << s.T << " N=" << s.N << " C=" << s.C << " H=" << s.H;
        return MX_FAIL;
      }
    }
    if (op.lengths) {
      float* dl = ptr(out->at(hi + op.states()));
      if (dl) std::memset(dl, 0, sizeof(float) * s.N);
    }
    return MX_SUCCESS;
  }

 private:
  Op op_;
  std::vector<float> reserve_;  // (D, T, N, K*H): gates and cells of the last forward
};

MXReturnValue createOpState(const Attrs& attrs, const MXContext& ctx,
                            const std::vector<std::vector<unsigned int>>& in_shapes,
                            const std::vector<int> in_types, CustomStatefulOp** state) {
  Op op;
  if (!parse(attrs, &op)) {
    MX_ERROR_MSG << "mxlstm_rnn: bad attributes (mode, state_size, gemm)";
    return MX_FAIL;
  }
  *state = CustomStatefulOp::create<RnnState>(op);
  return MX_SUCCESS;
}
}  // namespace

REGISTER_OP(mxlstm_rnn)
.setCreateOpState(createOpState, "cpu")
.setParseAttrs(parseAttrs)
.setInferType(inferType)
.setInferShape(inferShape);

MXReturnValue initialize(int version) {
  if (version < 10900) {
    MX_ERROR_MSG << "mxlstm kernel needs MXNet >= 1.9, got " << version;
    return MX_FAIL;
  }
  const char* lib = std::getenv("MXLSTM_KERNEL_BLAS");
  const char* sym = std::getenv("MXLSTM_KERNEL_BLAS_SYMBOL");
  std::string name = sym && *sym ? sym : "cblas_sgemm";
  void* handle = dlopen(lib && *lib ? lib : nullptr, RTLD_NOW | RTLD_LOCAL);
  void* fn = handle ? dlsym(handle, name.c_str()) : nullptr;
  if (!fn) {
    MX_ERROR_MSG << "mxlstm kernel: no " << name << " in " << (lib ? lib : "the process");
    return MX_FAIL;
  }
  if (name.size() > 3 && name.compare(name.size() - 3, 3, "64_") == 0)
    g_sgemm64 = reinterpret_cast<sgemm64_t>(fn);
  else
    g_sgemm32 = reinterpret_cast<sgemm32_t>(fn);
  return MX_SUCCESS;
}
