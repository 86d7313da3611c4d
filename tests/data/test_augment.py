import copy
import math

import numpy as np
import pytest
from mxnet import gluon

from mxlstm.data.augment import (
    AugmentedDataset,
    Compose,
    Jitter,
    MixSameClass,
    PixelShift,
    RandomCrop,
    RandomSwap,
    Scale,
    SmallRotation,
    TimeMask,
    TimeShift,
    TimeStretch,
    TokenDropout,
    UnknownSubstitution,
    rotate,
)
from mxlstm.data.augment_spec import build_augmentation
from mxlstm.data.batching import EpochIndex, make_loader
from mxlstm.errors import ConfigError


def rng(seed=0):
    return np.random.default_rng(seed)


def seq(t=30, c=3, seed=0):
    return np.random.default_rng(seed).random((t, c), dtype=np.float32) + 1.0


def blob(size=28, centre=(14, 14)):
    yy, xx = np.mgrid[0:size, 0:size]
    return np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / 8.0).astype(np.float32)


def centre_of_mass(img):
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    return np.array([(yy * img).sum(), (xx * img).sum()]) / img.sum()


def shifted(x, k):
    """np.roll with the wrapped-around steps zeroed."""
    out = np.roll(x, k, axis=0)
    if k > 0:
        out[:k] = 0
    elif k < 0:
        out[k:] = 0
    return out


# ------------------------------------------------------- what each augmentation does


@pytest.mark.parametrize("mode", ["pad", "wrap"])
def test_time_shift_is_a_roll(mode):
    x = seq()
    seen = set()
    for s in range(30):
        out = TimeShift(4, mode=mode)(x, rng(s))
        matches = [k for k in range(-4, 5)
                   if np.array_equal(out, shifted(x, k) if mode == "pad" else np.roll(x, k, 0))]
        assert len(matches) == 1
        seen.add(matches[0])
    assert min(seen) < 0 < max(seen)


def test_time_shift_fraction_of_length():
    x = seq(t=100)
    for s in range(20):
        out = TimeShift(0.05)(x, rng(s))
        assert any(np.array_equal(out, shifted(x, k)) for k in range(-5, 6))


def test_jitter_noise_std_is_sigma():
    x = seq(t=20_000, c=4)
    noise = Jitter(0.03)(x, rng()) - x
    assert abs(noise.std() - 0.03) < 0.0006 and abs(noise.mean()) < 0.0006


def test_scale_multiplies_each_channel():
    factors = []
    for s in range(300):
        x = seq(seed=s)
        ratio = Scale(0.1)(x, rng(s)) / x
        np.testing.assert_allclose(ratio, np.broadcast_to(ratio[0], ratio.shape), rtol=1e-5)
        factors.extend(ratio[0])
    assert abs(np.std(factors) - 0.1) < 0.01 and abs(np.mean(factors) - 1.0) < 0.01


def test_time_mask_zeroes_one_contiguous_span():
    x = seq()
    for s in range(20):
        out = TimeMask(5)(x, rng(s))
        zero = np.flatnonzero((out == 0).all(axis=1))
        assert 1 <= len(zero) <= 5 and np.all(np.diff(zero) == 1)
        keep = np.ones(len(x), bool)
        keep[zero] = False
        np.testing.assert_array_equal(out[keep], x[keep])
    np.testing.assert_array_equal(TimeMask(0)(x, rng()), x)
    assert (TimeMask(0.01)(x, rng()) == 0).all(axis=1).sum() == 1  # a fraction masks >= 1 step


def test_random_crop_is_a_window():
    x = seq(t=40)
    for s in range(20):
        out = RandomCrop(0.5)(x, rng(s))
        assert 20 <= len(out) <= 40
        starts = [i for i in range(41 - len(out)) if np.array_equal(x[i : i + len(out)], out)]
        assert len(starts) == 1


def test_time_stretch_resamples_linearly():
    ramp = np.arange(50, dtype=np.float32)[:, None] * np.array([1.0, -2.0], np.float32)
    sizes = set()
    for s in range(20):
        out = TimeStretch(0.5, 1.5)(ramp, rng(s))
        assert 25 <= len(out) <= 75
        sizes.add(len(out))
        np.testing.assert_allclose(out, np.linspace(ramp[0], ramp[-1], len(out)), atol=1e-4)
    assert len(sizes) > 3


def test_pixel_shift_moves_centre_of_mass():
    img = blob()
    moved = set()
    for s in range(20):
        out = PixelShift(3)(img, rng(s))
        delta = centre_of_mass(out) - centre_of_mass(img)
        np.testing.assert_allclose(delta, np.round(delta), atol=1e-3)
        assert np.abs(delta).max() <= 3 + 1e-3
        np.testing.assert_allclose(out.sum(), img.sum(), rtol=1e-3)
        moved.add(tuple(np.round(delta).astype(int)))
    assert any(dx != 0 for _, dx in moved) and any(dy != 0 for dy, _ in moved)


def test_rotation():
    img = blob(centre=(10, 15)) + blob(centre=(20, 8))
    np.testing.assert_allclose(SmallRotation(0)(img, rng()), img, atol=1e-6)
    square = np.arange(49, dtype=np.float32).reshape(7, 7)
    np.testing.assert_allclose(rotate(square, 90), np.rot90(square, -1), atol=1e-5)
    centred = blob(27, (13, 13))  # the rotation centre is ((rows - 1) / 2, (cols - 1) / 2)
    for s in range(5):
        out = SmallRotation(15)(img, rng(s))
        assert not np.allclose(out, img, atol=1e-3)
        np.testing.assert_allclose(out.sum(), img.sum(), rtol=0.02)
        turned = SmallRotation(15)(centred, rng(s))
        np.testing.assert_allclose(centre_of_mass(turned), centre_of_mass(centred), atol=0.05)


def test_token_dropout_keeps_order_and_never_drops_all():
    ids = np.arange(1, 201)
    out = TokenDropout(0.3)(ids, rng())
    assert 100 < len(out) < 180
    assert np.all(np.diff(out) > 0)  # a subsequence of an increasing list
    assert len(TokenDropout(1.0)(ids, rng())) == 1
    np.testing.assert_array_equal(TokenDropout(0.0)(list(ids), rng()), ids)


def test_random_swap_swaps_neighbours():
    ids = np.arange(10, 30)
    out = RandomSwap(1)(ids, rng(3))
    diff = np.flatnonzero(out != ids)
    assert len(diff) == 2 and diff[1] == diff[0] + 1
    np.testing.assert_array_equal(np.sort(RandomSwap(5)(ids, rng())), ids)


def test_unknown_substitution():
    ids = np.arange(2, 10_002)
    out = UnknownSubstitution(0.2, unk_id=1)(ids, rng())
    changed = out != ids
    assert (out[changed] == 1).all() and abs(changed.mean() - 0.2) < 0.02


def test_probability_p():
    x = seq()
    assert TimeShift(3, p=0.0)(x, rng()) is x
    applied = sum(not np.array_equal(Jitter(0.1, p=0.3)(x, rng(s)), x) for s in range(400))
    assert 90 < applied < 150


# --------------------------------------------------- dataset-level guarantees, for all

SEQ_AUGS = [TimeShift(3), TimeShift(0.2, mode="wrap"), Jitter(0.1), Scale(0.2), TimeMask(4),
            RandomCrop(0.5), TimeStretch(0.7, 1.3), MixSameClass(0.4)]
IMAGE_AUGS = [PixelShift(2), SmallRotation(10)]
TEXT_AUGS = [TokenDropout(0.3), RandomSwap(2), UnknownSubstitution(0.3, unk_id=1)]
CASES = ([("seq", a) for a in SEQ_AUGS] + [("image", a) for a in IMAGE_AUGS]
         + [("text", a) for a in TEXT_AUGS])


def make_data(kind, n=12):
    r = np.random.default_rng(42)
    if kind == "seq":
        feats = [r.random((int(t), 2), dtype=np.float32) + 1 for t in r.integers(10, 20, n)]
    elif kind == "image":
        feats = [blob(12, tuple(r.integers(4, 8, 2))) for _ in range(n)]
    else:
        feats = [r.integers(2, 50, size=int(t)) for t in r.integers(8, 16, n)]
    return gluon.data.SimpleDataset([(f, i % 2, len(f)) for i, f in enumerate(feats)])


@pytest.mark.parametrize(("kind", "aug"), CASES, ids=lambda c: repr(c)[:40])
def test_augmented_dataset_guarantees(kind, aug):
    plain = make_data(kind)
    before = copy.deepcopy(list(plain))
    data = AugmentedDataset(plain, Compose([aug]), seed=1)
    first = [data[i] for i in range(len(data))]
    for (x, label, length), (_, label0, _) in zip(first, before, strict=True):
        assert label == label0  # labels untouched
        assert length == len(x)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, before, strict=True))
    again = AugmentedDataset(plain, Compose([aug]), seed=1)
    assert all(np.array_equal(a[0], again[i][0]) for i, a in enumerate(first))
    again.set_epoch(1)
    assert any(not np.array_equal(a[0], again[i][0]) for i, a in enumerate(first))
    assert all(np.array_equal(a[0], data[EpochIndex(i, 0)][0]) for i, a in enumerate(first))
    for (x, label, length), (x0, label0, length0) in zip(plain, before, strict=True):
        assert x is not x0 and np.array_equal(x, x0) and label == label0 and length == length0


@pytest.mark.parametrize(("kind", "aug"), CASES, ids=lambda c: repr(c)[:40])
def test_augmentations_do_not_modify_input(kind, aug):
    x = make_data(kind)[0][0]
    keep = x.copy()
    if isinstance(aug, MixSameClass):
        aug.mix(x, make_data(kind)[2][0], rng())
    else:
        aug(x, rng())
    np.testing.assert_array_equal(x, keep)


def test_mix_same_class_stays_within_class():
    samples = [(np.full((8 + i % 3, 2), v, np.float32), int(v >= 100), 8 + i % 3)
               for i, v in enumerate([1.0, 2.0, 3.0, 100.0, 101.0, 102.0, 4.0])]
    data = AugmentedDataset(gluon.data.SimpleDataset(samples), Compose([MixSameClass(0.5)]),
                            seed=0, labels=[s[1] for s in samples])
    for i, (x, label, length) in enumerate(samples):
        out, label2, length2 = data[i]
        assert label2 == label and length2 == length and out.shape == x.shape
        lo, hi = (1.0, 4.0) if label == 0 else (100.0, 102.0)
        assert lo <= out.min() and out.max() <= hi and not np.allclose(out, x)
        assert np.abs(out - x).max() <= (hi - lo) / 2 + 1e-5  # x keeps weight >= 0.5
    with pytest.raises(ConfigError):
        Compose([MixSameClass(0.5)])(samples[0][0], rng())
    with pytest.raises(ConfigError):
        AugmentedDataset(gluon.data.SimpleDataset(samples), None, seed="1")


def test_lengths_and_two_field_samples():
    ds = gluon.data.SimpleDataset([(seq(t=20), 3, np.float32(20)), (seq(t=30), 4, 30)])
    out = AugmentedDataset(ds, Compose([RandomCrop(0.2)]), seed=0)
    (x0, _, n0), (x1, _, n1) = out[0], out[1]
    assert n0 == len(x0) and isinstance(n0, np.float32) and n1 == len(x1)
    assert AugmentedDataset(ds, TimeShift(2), seed=0)[0][2] == 20
    pairs = gluon.data.SimpleDataset([(seq(), 7)])
    x, label = AugmentedDataset(pairs, Jitter(0.1), seed=0)[0]
    assert label == 7 and x.shape == (30, 3)


def test_epochs_reach_worker_processes():
    plain = make_data("seq", n=6)
    data = AugmentedDataset(plain, build_augmentation("jitter:0.1"), seed=3)
    lengths = [len(s[0]) for s in plain]

    def epoch(workers, e):
        loader = make_loader(data, 3, False, 0, lengths=lengths, num_buckets=2,
                             num_workers=workers)
        loader.set_epoch(e)
        return [b[0].asnumpy() for b in loader]

    zero, one = epoch(1, 0), epoch(1, 1)
    assert not all(a.shape == b.shape and np.allclose(a, b) for a, b in zip(zero, one))
    for a, b in zip(zero, epoch(0, 0), strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------- specs


def test_build_augmentation_string_and_dict():
    comp = build_augmentation("shift:0.5,jitter:0.03,scale:0.1,mask:0.1@0.5")
    kinds = [type(t) for t in comp.transforms]
    assert kinds == [TimeShift, Jitter, Scale, TimeMask]
    assert comp.transforms[0].max_shift == 0.5 and comp.transforms[3].p == 0.5
    stretch = build_augmentation("stretch:0.2").transforms[0]
    assert math.isclose(stretch.min_factor, 0.8) and math.isclose(stretch.max_factor, 1.2)
    unk = build_augmentation("unk:0.1", unk_id=3).transforms[0]
    assert unk.unk_id == 3 and unk.rate == 0.1
    comp = build_augmentation({"shift": {"max_shift": 3, "mode": "wrap", "p": 0.2}, "swap": 2})
    assert comp.transforms[0].mode == "wrap" and comp.transforms[1].n == 2
    assert len(build_augmentation("")) == 0 and len(build_augmentation(None)) == 0


@pytest.mark.parametrize(
    "spec",
    ["blur:0.1", "jitter:-1", "jitter:abc", "shift", "shift:2.5", "mask:0.1@2", "unk:0.1",
     "jitter:nan", {"shift": {"width": 3}}, {"shift": {"max_shift": 1, "mode": "mirror"}},
     "mix:0.1,mix:0.2", 42],
)
def test_build_augmentation_errors(spec):
    with pytest.raises(ConfigError):
        comp = build_augmentation(spec)
        AugmentedDataset(make_data("seq"), comp, seed=0)
