"""Which trained model a run keeps (``train.select``) and the key combinations that
cannot work without a validation split.

``best``: the epoch with the best validation metric (``train.monitor``), saved as the
``best`` checkpoint whenever it improves. ``last``: the final epoch, at the end of the
schedule, saved as ``best`` once that epoch is done; with ``data.valid_fraction=0`` every
training series trains and no validation split is held out (the UCR/UEA deep-learning
protocol: a fixed budget on the whole training split, the final model kept).
"""

from __future__ import annotations

from mxlstm.config import RunConfig
from mxlstm.errors import ConfigError


def has_validation(cfg: RunConfig) -> bool:
    """A validation split is held out or given (tasks that do not read
    ``data.valid_fraction`` keep its default, so they always have one)."""
    return bool(cfg.data.valid_path) or cfg.data.valid_fraction > 0


def check_selection(cfg: RunConfig) -> None:
    """Refuse, with one line naming the keys, a combination that needs a validation
    metric the run will not have or track."""
    t = cfg.train
    if not has_validation(cfg):
        none = "data.valid_fraction=0 holds out no validation split"
        if t.select == "best":
            raise ConfigError(f"{none}, so there is no best epoch to select; add --set "
                              f"train.select=last (keep the final epoch) or give "
                              f"data.valid_fraction > 0")
        for wrong, key in ((t.early_stopping > 0, f"train.early_stopping={t.early_stopping}"),
                           (t.schedule == "plateau", "train.schedule=plateau"),
                           (bool(t.monitor), f"train.monitor={t.monitor}")):
            if wrong:
                raise ConfigError(f"{key} needs a validation metric but {none}; give "
                                  f"data.valid_fraction > 0 or leave {key.split('=')[0]} out")
    if t.select == "last":
        for wrong, key in ((t.early_stopping > 0, f"train.early_stopping={t.early_stopping}"),
                           (t.schedule == "plateau", "train.schedule=plateau")):
            if wrong:
                raise ConfigError(f"{key} acts on the best validation epoch, which "
                                  f"train.select=last does not keep; use train.select=best "
                                  f"or a fixed schedule (e.g. train.schedule=cosine)")


def selection_report(cfg: RunConfig) -> dict:
    """How the reported model was chosen, for ``report.json``."""
    if cfg.train.select == "last":
        how = "the final epoch" + ("" if has_validation(cfg) else " (no validation split)")
    else:
        how = "the epoch with the best validation metric"
    return {"select": cfg.train.select, "validation": has_validation(cfg), "model": how}
