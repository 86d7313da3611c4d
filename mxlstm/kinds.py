"""The task kinds of the exported format: what a model's first output is and how it is
answered. Standard library only; ``mxlstm export`` copies this file beside
``predictor.py``. Each task declares its kind in its :class:`~mxlstm.tasks.spec.TaskSpec`.

=======================  ========  =============  =====================================
kind                     head      answer         notes
=======================  ========  =============  =====================================
sequence_classification  logits    labels         softmax over ``label_names``
text_classification      logits    labels         softmax over ``label_names``
regression               value     values         the predicted numbers
tagging                  logits    step_labels    one label per valid step
language_model           logits    tokens         next token; always exported stateful
=======================  ========  =============  =====================================
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One task kind.

    ``head``: name of the first graph output; ``answer``: ``labels`` (a class of
    ``label_names``), ``step_labels`` (one per step), ``values`` or ``tokens`` (the
    vocabulary); ``stateful``: exported with its states as inputs and outputs (no
    ``valid_length``); ``describes``: the first output, in words.
    """

    name: str
    head: str
    answer: str
    describes: str
    stateful: bool = False

    @property
    def labelled(self) -> bool:
        """Outputs are scores over ``label_names``."""
        return self.answer in ("labels", "step_labels")

    @property
    def ranked(self) -> str | None:
        """What ``top_k`` ranks (``labels`` / ``tokens``), or None."""
        return {"labels": "labels", "tokens": "tokens"}.get(self.answer)


_SCORES = "class scores (softmax -> probabilities of label_names)"
KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("sequence_classification", "logits", "labels", _SCORES),
    Kind("text_classification", "logits", "labels", _SCORES),
    Kind("regression", "value", "values", "predicted values"),
    Kind("tagging", "logits", "step_labels", "per-step class scores"),
    Kind("language_model", "logits", "tokens", "next-token scores over the vocabulary",
         stateful=True),
)}
