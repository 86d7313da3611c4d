"""The ``>>>`` examples in the block docstrings run as written."""

from __future__ import annotations

import doctest

import pytest

from mxlstm.blocks import models, recurrent, series_model


@pytest.mark.parametrize("module", [models, recurrent, series_model], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{module.__name__} has no example"
    assert result.failed == 0
