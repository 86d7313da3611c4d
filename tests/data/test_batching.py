import gc
import pickle

import gluonnlp as nlp
import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from mxlstm.data.batchify import hand_over, pad_batchify
from mxlstm.data.batching import (
    EpochIndex,
    SeededBucketSampler,
    lm_batches,
    make_loader,
    to_context,
)
from mxlstm.errors import ConfigError, DataError


def _seq_dataset(lengths, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    samples = [
        (rng.random((n, channels), dtype=np.float32) + 1.0, i % 3, n)
        for i, n in enumerate(lengths)
    ]
    return gluon.data.SimpleDataset(samples)


def _index_dataset(n):
    """Samples whose features hold their own index (for checking orders)."""
    return gluon.data.SimpleDataset([(np.full((1, 1), i, np.float32), i, 1) for i in range(n)])


def _order(loader):
    return [int(v) for _, label, _ in loader for v in label.asnumpy()]


def test_pad_batchify_pads_right_with_valid_length():
    ds = _seq_dataset([3, 5, 2])
    x, label, valid = pad_batchify(pad_val=-1.0)([ds[i] for i in range(3)])
    assert x.shape == (3, 5, 2) and x.dtype == np.float32
    assert label.dtype == np.int32 and valid.dtype == np.float32
    np.testing.assert_array_equal(valid.asnumpy(), [3, 5, 2])
    np.testing.assert_array_equal(label.asnumpy(), [0, 1, 2])
    xs = x.asnumpy()
    for i, n in enumerate([3, 5, 2]):
        np.testing.assert_array_equal(xs[i, :n], ds[i][0])
        assert (xs[i, n:] == -1.0).all()


def test_pad_batchify_token_ids_and_two_field_samples():
    samples = [(np.array([4, 5, 6], np.int32), 1.5), (np.array([7], np.int32), 0.5)]
    x, label, valid = pad_batchify(pad_val=0, label_dtype="float32")(samples)
    assert x.dtype == np.int32
    np.testing.assert_array_equal(x.asnumpy(), [[4, 5, 6], [7, 0, 0]])
    np.testing.assert_array_equal(label.asnumpy(), [1.5, 0.5])
    assert valid.dtype == np.float32
    np.testing.assert_array_equal(valid.asnumpy(), [3, 1])


def test_pad_batchify_rejects_bad_length():
    with pytest.raises(DataError):
        pad_batchify()([(np.zeros((2, 1), np.float32), 0, 3)])


def test_bucketing_groups_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 101, size=300)
    spread = {}
    for buckets in (None, 5):
        loader = make_loader(_seq_dataset(lengths), 10, True, seed=1, lengths=lengths,
                             num_buckets=buckets)
        ranges = [float(v.max().asscalar() - v.min().asscalar()) for _, _, v in loader]
        spread[buckets] = np.mean(ranges)
        assert sum(b[0].shape[0] for b in loader) == 300
    assert spread[5] <= 20 < spread[None]


@pytest.mark.parametrize("buckets", [None, 4])
def test_same_seed_and_epoch_same_order(buckets):
    n = 57
    lengths = np.arange(n) % 9 + 1
    ds = _index_dataset(n)

    def loader(seed):
        return make_loader(ds, 8, True, seed, lengths=lengths, num_buckets=buckets)

    a, b = loader(5), loader(5)
    a.set_epoch(3)
    b.set_epoch(3)
    first = _order(a)
    assert first == _order(b)
    assert sorted(first) == list(range(n))
    assert _order(a) != first  # the next epoch (4) differs
    a.set_epoch(3)
    assert _order(a) == first
    other = loader(6)
    other.set_epoch(3)
    assert _order(other) != first


def test_loader_epochs_advance_and_global_rng_untouched():
    lengths = np.arange(40) % 7 + 1
    loader = make_loader(_index_dataset(40), 4, True, 0, lengths=lengths, num_buckets=3)
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    epoch0, epoch1 = _order(loader), _order(loader)
    assert np.random.random() == expected
    loader.set_epoch(0)
    assert _order(loader) == epoch0 and epoch0 != epoch1


def test_sampler_indices_carry_epoch_and_pickle():
    sampler = SeededBucketSampler([1, 2, 3, 4, 5, 6], 2, 2, shuffle=True, seed=0)
    sampler.set_epoch(7)
    batches = list(sampler)
    assert all(isinstance(i, EpochIndex) and i.epoch == 7 for b in batches for i in b)
    idx = pickle.loads(pickle.dumps(EpochIndex(4, 9)))
    assert idx == 4 and idx.epoch == 9 and isinstance(idx, EpochIndex)


def test_unshuffled_and_last_batch():
    ds = _index_dataset(10)
    assert _order(make_loader(ds, 4, False, 0)) == list(range(10))
    assert len(make_loader(ds, 4, False, 0)) == 3
    discard = make_loader(ds, 4, True, 0, last_batch="discard")
    assert len(discard) == 2 and len(_order(discard)) == 8
    lengths = [1] * 5 + [9] * 5
    bucketed = make_loader(ds, 4, True, 0, lengths=lengths, num_buckets=2, last_batch="discard")
    assert len(bucketed) == 2
    assert all(b[0].shape[0] == 4 for b in bucketed)


def test_equal_lengths_fall_back_to_plain_batching():
    loader = make_loader(_index_dataset(9), 3, True, 0, lengths=[4] * 9, num_buckets=3)
    assert sorted(_order(loader)) == list(range(9))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"num_buckets": 3},
        {"num_buckets": 3, "lengths": [1, 2, 3, 4], "last_batch": "rollover"},
        {"last_batch": "drop"},
        {"seed": -1},
    ],
)
def test_make_loader_bad_options(kwargs):
    args = {"batch_size": 2, "shuffle": True, "seed": 0, **kwargs}
    with pytest.raises(ConfigError):
        make_loader(_index_dataset(4), **args)


def test_batches_of_one_shape_equal_gluonnlps_and_skip_shared_memory():
    rng = np.random.default_rng(0)
    for dtype, label_dtype in ((np.float32, "int32"), (np.float64, "float32")):
        samples = [(rng.random((4, 3)).astype(dtype), k % 3, np.float32(1 + k % 4))
                   for k in range(6)]
        pad = pad_batchify(label_dtype=label_dtype)
        fast, padded = pad(samples), pad._with_length(samples)  # the gluonnlp path
        for a, b in zip(fast, padded):
            assert a.dtype == b.dtype and a.shape == b.shape and a.context == mx.cpu()
            assert np.array_equal(a.asnumpy(), b.asnumpy())
    with pytest.raises(DataError, match=r"sample 1 of the batch: length 5.0 outside 1..4"):
        pad([samples[0], (samples[1][0], 0, np.float32(5))])


def test_hand_over_shares_memory_outlives_the_numpy_name_and_freezes_it():
    for dtype in (np.float32, np.float64, np.int32, np.int64):
        array = np.arange(24, dtype=dtype).reshape(2, 3, 4)[:, ::-1]  # not contiguous
        out = hand_over(array)
        assert out.dtype == dtype and out.context == mx.cpu() and out.shape == (2, 3, 4)
        assert np.array_equal(out.asnumpy(), array)
    fresh = np.ones((3, 5), np.float32)
    out = hand_over(fresh)
    assert not fresh.flags.writeable  # the batch cannot change under a queued operator
    with pytest.raises(ValueError):
        fresh[0, 0] = 7
    again = hand_over(fresh)  # a read-only array is copied first
    del fresh
    gc.collect()
    total = (out * 2 + again).sum().asscalar()  # the memory is still alive
    assert total == 45.0


def test_to_context_moves_batches_off_cpu_shared():
    batch = pad_batchify()([([1.0, 1.0], 1, 2), ([1.0], 1, 1)])  # lists: Pad's shared memory
    assert all(a.context == mx.Context("cpu_shared", 0) for a in batch)
    moved = to_context([batch, {"k": batch[0]}, "tag"], mx.cpu())
    assert isinstance(moved[0], tuple) and moved[2] == "tag"
    assert all(a.context == mx.cpu() for a in moved[0])
    assert moved[1]["k"].context == mx.cpu()


def test_to_context_with_worker_batches_and_hybridized_block():
    loader = make_loader(_seq_dataset([3, 4, 5, 6]), 2, True, 0, num_workers=1)
    net = gluon.nn.Dense(1, flatten=False)
    net.initialize()
    net.hybridize()
    for batch in loader:
        assert batch[0].context == mx.Context("cpu_shared", 0)
        with pytest.raises(mx.base.MXNetError):
            net(batch[0])
        x, _, _ = to_context(batch, mx.cpu())
        assert net(x).shape == x.shape[:2] + (1,)


def test_lm_batches_layout():
    batches = list(lm_batches(np.arange(12), batch_size=2, bptt=2))
    assert len(batches) == 3
    data, target = batches[0]
    np.testing.assert_array_equal(data, [[0, 6], [1, 7]])
    np.testing.assert_array_equal(target, [[1, 7], [2, 8]])
    np.testing.assert_array_equal(batches[2][0], [[4, 10]])
    np.testing.assert_array_equal(batches[2][1], [[5, 11]])
    assert data.dtype == np.int32
    nt = list(lm_batches(np.arange(12), 2, 2, layout="NT", last_batch="discard"))
    assert len(nt) == 2
    np.testing.assert_array_equal(nt[1][0], batches[1][0].T)


def test_lm_batches_equal_corpus_bptt_batchify():
    tokens = [f"w{i % 17}" for i in range(203)]
    vocab = nlp.Vocab(nlp.data.count_tokens(tokens))
    expected = nlp.data.batchify.CorpusBPTTBatchify(vocab, 7, 4, last_batch="discard")(tokens)
    got = list(lm_batches(np.array(vocab[tokens]), 4, 7, last_batch="discard"))
    assert len(got) == len(expected)
    for (data, target), (d, t) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(data, d.asnumpy())
        np.testing.assert_array_equal(target, t.asnumpy())


def test_lm_batches_bad_input():
    with pytest.raises(DataError):
        lm_batches(np.arange(3), 2, 5)
    with pytest.raises(DataError):
        lm_batches(np.ones(20), 2, 5)
    with pytest.raises(ConfigError):
        lm_batches(np.arange(20), 2, 0)


@pytest.mark.parametrize("width", [2, 3])
@pytest.mark.parametrize("kind", ["ids", "features"])
def test_numpy_padding_equals_gluonnlp_pad(width, kind):
    """Numpy features are padded in numpy: the same values and dtypes as GluonNLP's
    Tuple(Pad, Stack, Stack), on cpu(0) instead of Pad's shared memory."""
    rng = np.random.default_rng(width)
    lengths = rng.integers(1, 9, size=17)
    lengths[3] = 12
    if kind == "ids":
        feats = [rng.integers(1, 50, size=n).astype(np.int32) for n in lengths]
    else:
        feats = [rng.standard_normal((n, 3)).astype(np.float32) for n in lengths]
    samples = [(f, i % 4, n)[:width] for i, (f, n) in enumerate(zip(feats, lengths))]
    got = pad_batchify(pad_val=-2, label_dtype="float32")(samples)
    pad = nlp.data.batchify.Pad(axis=0, pad_val=-2, ret_length=True)
    x, valid = pad([s[0] for s in samples])
    label = nlp.data.batchify.Stack(dtype="float32")([s[1] for s in samples])
    for mine, ref in zip(got, (x, label, valid.astype("float32"))):
        assert mine.dtype == ref.dtype and mine.shape == ref.shape
        assert mine.context == mx.cpu(0)
        np.testing.assert_array_equal(mine.asnumpy(), ref.asnumpy())
    assert got[0].shape[1] == 12 and (got[0].asnumpy()[0, lengths[0]:] == -2).all()


def test_list_features_still_go_through_gluonnlp_pad():
    x, _, valid = pad_batchify(pad_val=9)([([1, 2, 3], 0), ([4], 1)])
    np.testing.assert_array_equal(x.asnumpy(), [[1, 2, 3], [4, 9, 9]])
    np.testing.assert_array_equal(valid.asnumpy(), [3, 1])
    assert x.context == mx.Context("cpu_shared", 0)


def test_mixed_dtypes_are_cast_to_the_first_samples_as_gluonnlp_pad_does():
    samples = [(np.array([1.7, 2.2]), 0), (np.array([3, 4, 5], np.int32), 1)]
    x, _, valid = pad_batchify(pad_val=-1)(samples)
    ref, ref_valid = nlp.data.batchify.Pad(axis=0, pad_val=-1, ret_length=True)(
        [s[0] for s in samples])
    assert x.dtype == ref.dtype == np.float64 and x.context == mx.cpu(0)
    np.testing.assert_array_equal(x.asnumpy(), ref.asnumpy())
    np.testing.assert_array_equal(valid.asnumpy(), ref_valid.asnumpy())
