"""Which form of a trained model each export writes; every form is the model's own class
with a mode flag (:meth:`~mxlstm.blocks.models.SequenceModel.variant`), on the trained
Parameter objects.

=============================  =====================================  =====================
form                           inputs                                 outputs
=============================  =====================================  =====================
:func:`stateful_graph`         ``data``, states ``(L, N, H)``         per-step outputs /
(language models, streaming)                                          logits, new states
:func:`fixed_length_graph`     ``data`` whose rows all hold ``T``     pooled ``(N, K)``
                               steps (no ``valid_length``)            or per step
=============================  =====================================  =====================

Export forms leave out what is the identity at inference (dropout between layers,
DropConnect, input and embedding dropout) and, where the fused operator is exact, run
every recurrent layer as its own 1-layer fused op (``one_op_per_layer``: what mx2onnx
converts; ``split_directions``: two unidirectional ops, faster on this CPU's oneDNN at
batch 1, ``scripts/inference_op_timings.py``).
"""

from __future__ import annotations

from mxnet.gluon import HybridBlock

from mxlstm.blocks.models import LanguageModel

INFERENCE = {"dropout": 0.0, "weight_dropout": 0.0, "input_dropout": 0.0,
             "embedding_dropout": 0.0}


def _export_encoder(model: HybridBlock, split_directions: bool) -> dict:
    """Encoder options of an export form: one op per layer where the fused path is exact."""
    if model.encoder.fused_reason(False) is not None:
        return {}
    return {"one_op_per_layer": True, "split_directions": split_directions}


def stateful_graph(model: HybridBlock, layerwise: bool = False) -> HybridBlock:
    """A language model, or a unidirectional sequence model run chunk by chunk, with its
    states as separate inputs and outputs; ``layerwise``: the ONNX form (inference
    identities left out, one fused op per layer)."""
    changes = {**INFERENCE, **_export_encoder(model, False)} if layerwise else {}
    if layerwise and isinstance(model, LanguageModel):
        changes["output_dropout"] = 0.0
    return model.variant(streaming=True, **changes)


def fixed_length_graph(model: HybridBlock, length: int,
                       split_directions: bool = True) -> HybridBlock:
    """The sequence (or series) model without ``valid_length``: every row holds
    ``length`` steps."""
    options = model.options()
    inference = {k: v for k, v in INFERENCE.items()
                 if k in options or k in ("dropout", "weight_dropout")}  # encoder options
    return model.variant(fixed_length=length, **inference,
                         **_export_encoder(model, split_directions))


def data_length(prepared) -> tuple[int | None, int, int]:
    """``(T, shortest, longest)`` over the run's evaluation data; ``T`` is None unless every
    sequence has the same length (then a graph without ``valid_length`` is exact)."""
    lengths: set[int] = set()
    for loader in (prepared.valid_loader, prepared.test_loader):
        for batch in loader:
            lengths.add(int(batch[0].shape[1]))  # the padded width: the batch's longest
            if len(batch) > 2:
                lengths.update(int(v) for v in batch[2].asnumpy())
    low, high = min(lengths), max(lengths)
    return (high if low == high else None), low, high
