"""The embedded OSULeaf, ACSF1 (gzip) and Tecator (regression) sets read as documented."""

from __future__ import annotations

import numpy as np
import pytest

from mxlstm.data.sources import UEA_REGRESSION, load_ts, load_uea, uea_path
from mxlstm.errors import DataError


@pytest.mark.parametrize("name, split, count, length, classes", [
    ("OSULeaf", "train", 200, 427, 6), ("osuleaf", "test", 242, 427, 6),
    ("ACSF1", "train", 100, 1460, 10)])
def test_gzipped_sets(name, split, count, length, classes):
    data = load_uea(name, split)
    assert len(data) == count and data.max_length == length and data.num_classes == classes
    assert data.path.endswith(".ts.gz")


def test_tecator_is_regression_only():
    train = load_ts(uea_path("Tecator", "train", UEA_REGRESSION))
    assert len(train) == 172 and train.max_length == 100 and not train.label_names
    assert train.labels.dtype == np.float32 and 0 < train.labels.min() < train.labels.max() < 100
    with pytest.raises(DataError, match="unknown embedded UEA dataset 'Tecator'"):
        load_uea("Tecator", "train")
