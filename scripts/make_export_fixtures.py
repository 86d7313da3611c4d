"""Write the old-export fixtures of tests/deploy/test_old_exports.py (run once, committed).

    python scripts/make_export_fixtures.py tests/data_files/exports-v1

Trains tiny runs (1 epoch, 2 batches, hidden 8, seed 0), exports each form
(plain, streaming, fixed-length, language model) and records the predictor's answers on
fixed inputs in ``expected.json``, so that a later mxlstm must load these files and give
the same answers.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from mxlstm import runs
from mxlstm.config import apply_overrides
from mxlstm.data.fileio import embedded_path, read_text
from mxlstm.deploy import predictor as standalone
from mxlstm.deploy.export import export_model
from mxlstm.tasks import default_config

TINY = {"train.epochs": 1, "train.max_batches": 2, "model.hidden_size": 8,
        "train.progress": False, "train.eval_batch_size": 64, "train.seed": 0}
RUNS = {"digits": ("digits", {}, {}),
        "digits-stream": ("digits", {"model.bidirectional": False}, {"streaming": True}),
        "digits-fixed": ("digits", {}, {"fixed_length": True}),
        "vowels": ("vowels", {}, {}),
        "text": ("text", {"model.embed_size": 8, "data.max_vocab": 200, "train.ensemble": 1},
                 {}),
        "lm": ("lm", {"data.max_vocab": 100, "model.embed_size": 8,
                      "train.eval_batch_size": 8}, {})}
ROWS = [[[0.1 * (k + j) for j in range(8)] for k in range(t)] for t in (8, 5, 3)]
ITEMS = {"digits": ROWS, "digits-stream": ROWS, "digits-fixed": [ROWS[0]],
         "vowels": [[[0.05 * (k - j) for j in range(12)] for k in range(t)] for t in (9, 4)],
         "text": ["a fine film", "Hello, world 有趣 新闻!", "naïve café, don't STOP"],
         "lm": ["it is a truth universally", "she was"]}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    expected = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(read_text(embedded_path("austen/persuasion.txt.gz"))[:20000])
        for name, (task, overrides, options) in RUNS.items():
            overrides = {**TINY, **overrides}
            if task == "lm":
                overrides["data.path"] = str(corpus)
            run = Path(tmp) / name
            runs.train(apply_overrides(default_config(task), overrides, "fixture"), run)
            export_model(run, out / name, **options)
            p = standalone.Predictor(out / name)
            expected[name] = p.predict(ITEMS[name], top_k=3 if task == "lm" else None)
    (out / "expected.json").write_text(json.dumps({"items": ITEMS, "answers": expected},
                                                  indent=1, ensure_ascii=False))
    shutil.rmtree(out / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
