// mxlstm CPU kernel: the MXNet extension operator `mxlstm_softmax_nll` (see nll.h).
//
// Inputs:  logits (..., K) float32; labels (...) float32 (class indices, as `pick` takes).
// Output:  loss (...) = log sum_k e^logits - logits[label], per row.
// Backward receives (loss gradient, logits, labels, loss) and writes the logits' gradient
// (labels get 0).
#include <string>
#include <vector>

#include "mxnet/lib_api.h"
#include "nll.h"

using namespace mxnet::ext;  // NOLINT
using Attrs = std::unordered_map<std::string, std::string>;

namespace {
long rows_of(const MXTensor& t) {
  long r = 1;
  for (size_t i = 0; i + 1 < t.shape.size(); ++i) r *= t.shape[i];
  return r;
}

MXReturnValue nllParse(const Attrs&, int* num_in, int* num_out) {
  *num_in = 2;
  *num_out = 1;
  return MX_SUCCESS;
}

MXReturnValue nllType(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  for (size_t i = 0; i < in->size(); ++i) {
    if (in->at(i) != kFloat32 && in->at(i) != -1) {
      MX_ERROR_MSG << "mxlstm_softmax_nll: input " << i << " must be float32";
      return MX_FAIL;
    }
    in->at(i) = kFloat32;
  }
  out->at(0) = kFloat32;
  return MX_SUCCESS;
}

MXReturnValue nllShape(const Attrs&, std::vector<std::vector<unsigned int>>* in,
                       std::vector<std::vector<unsigned int>>* out) {
  const auto& x = in->at(0);
  if (x.empty() || x.back() == 0) {
    MX_ERROR_MSG << "mxlstm_softmax_nll: logits must be (..., K) with K >= 1";
    return MX_FAIL;
  }
  std::vector<unsigned int> rows(x.begin(), x.end() - 1);
  if (!in->at(1).empty() && in->at(1) != rows) {
    MX_ERROR_MSG << "mxlstm_softmax_nll: labels must have the logits' shape without the last axis";
    return MX_FAIL;
  }
  in->at(1) = rows;
  out->at(0) = rows;
  return MX_SUCCESS;
}

MXReturnValue nllForward(const Attrs&, std::vector<MXTensor>* in, std::vector<MXTensor>* out,
                         const OpResource&) {
  MXTensor& x = in->at(0);
  mxlstm::softmax_nll_forward(x.data<float>(), in->at(1).data<float>(), rows_of(x),
                              static_cast<int>(x.shape.back()), out->at(0).data<float>());
  return MX_SUCCESS;
}

MXReturnValue nllBackward(const Attrs&, std::vector<MXTensor>* in, std::vector<MXTensor>* out,
                          const OpResource&) {
  std::vector<MXTensor>& v = *in;  // [d loss, logits, labels, loss]
  MXTensor& x = v[1];
  const long R = rows_of(x);
  mxlstm::softmax_nll_backward(x.data<float>(), v[2].data<float>(), v[0].data<float>(), R,
                               static_cast<int>(x.shape.back()), out->at(0).data<float>());
  if (out->size() > 1 && out->at(1).data_ptr) {
    float* dl = out->at(1).data<float>();
    for (long r = 0; r < R; ++r) dl[r] = 0.0f;
  }
  return MX_SUCCESS;
}
}  // namespace

REGISTER_OP(mxlstm_softmax_nll)
.setForward(nllForward, "cpu")
.setBackward(nllBackward, "cpu")
.setParseAttrs(nllParse)
.setInferType(nllType)
.setInferShape(nllShape);
