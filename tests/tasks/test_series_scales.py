"""The series model a config builds: the second convolutional branch and window
statistics (``model.conv_fine_steps``, ``model.window_stats``) from the series length."""

from __future__ import annotations

import pytest

from mxlstm.config import apply_overrides
from mxlstm.errors import MxlstmError
from mxlstm.tasks import default_config
from mxlstm.tasks.base import sequence_model


def _model(length: int, **overrides):
    cfg = apply_overrides(default_config("uea"), {"model.conv_fine_steps": 512, **overrides},
                          "test")
    return sequence_model(cfg, 3, input_size=1, max_length=length)


@pytest.mark.parametrize("length, strides, fine", [
    (1460, (12, 12), 3),   # ACSF1: windows of 12 beside windows of 3
    (427, (4, 4), 1),      # OSULeaf: windows of 4 beside every step
    (150, (2, 2), 1),      # GunPoint
    (100, (1, 1), None),   # Tecator, ItalyPowerDemand (24), JapaneseVowels (29):
    (24, (1, 1), None),    # no finer scale, so no second branch
])
def test_second_branch_only_where_it_adds_a_finer_scale(length, strides, fine):
    model = _model(length)
    assert (model.stride, model.conv_stride) == strides
    assert model.fine_stride == fine and (model.conv_fine is None) == (fine is None)
    assert [s for _, s in model.conv_branches()] == [strides[1]] + ([fine] if fine else [])


def test_preset_is_multi_scale_and_window_stats_reach_the_model():
    cfg = default_config("uea")
    assert cfg.model.conv_fine_steps == 512 and cfg.model.window_stats == "mean"
    assert default_config("vowels").model.conv_fine_steps == 512
    assert _model(1460, **{"model.conv_fine_steps": -1}).conv_fine is None
    assert _model(1460, **{"model.window_stats": "meanmaxmin"}).window_stats == "meanmaxmin"
    with pytest.raises(MxlstmError, match="window_stats"):
        _model(1460, **{"model.window_stats": "median"})
