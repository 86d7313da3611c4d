"""Checkpoints: round trip with Adam states, corruption, simulated crashes, atomic writes."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from mxlstm.errors import ModelFileError
from mxlstm.training import checkpoint as ck


def make_model(seed: int = 0, steps: int = 0):
    mx.random.seed(seed)
    net = gluon.nn.Dense(3, in_units=4)
    net.initialize(mx.init.Xavier())
    sched = mx.lr_scheduler.FactorScheduler(step=2, factor=0.5, base_lr=0.01)
    trainer = gluon.Trainer(net.collect_params(), "adam",
                            {"learning_rate": 0.01, "lr_scheduler": sched})
    for i in range(steps):
        step(net, trainer, i)
    return net, trainer


def step(net, trainer, i: int) -> None:
    rng = np.random.RandomState(100 + i)
    x = mx.nd.array(rng.randn(5, 4))
    y = mx.nd.array(rng.randn(5, 3))
    with autograd.record():
        loss = ((net(x) - y) ** 2).mean()
    loss.backward()
    trainer.step(5)


def params_of(net) -> dict[str, np.ndarray]:
    return {k: v.data().asnumpy() for k, v in net._collect_params_with_prefix().items()}


def save(run_dir, tag="last", gstep=1, net=None, trainer=None):
    if net is None:
        net, trainer = make_model(steps=1)
    return ck.save_checkpoint(run_dir, tag, net, trainer, {"epoch": gstep, "global_step": gstep},
                              files={"config.json": '{"a": 1}', "vocab.json": b"[]"})


def test_round_trip_params_and_adam_states(tmp_path):
    net, trainer = make_model(seed=1, steps=3)
    state = {"epoch": 2, "global_step": 3, "best_metric": np.float32(0.5), "history": [1, 2]}
    path = ck.save_checkpoint(tmp_path, "last", net, trainer, state, {"config.json": "{}"})
    assert path == tmp_path / "checkpoints" / "last"
    assert ck.validate_checkpoint(path)
    assert sorted(os.listdir(path)) == ["MANIFEST.json", "config.json", "model.params",
                                       "optimizer.json", "optimizer.params", "state.json"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "last"
    assert ck.find_checkpoint(tmp_path) == path

    net2, trainer2 = make_model(seed=2)
    loaded = ck.load_checkpoint(path, net2, trainer2)
    assert loaded["global_step"] == 3 and loaded["best_metric"] == 0.5
    assert set(loaded["rng"]) == {"python", "numpy"}
    random.seed(5)
    again = ck.save_checkpoint(tmp_path, "again", net, trainer, loaded)  # rng re-captured
    random.seed(5)
    assert ck.load_checkpoint(again, net2, None)["rng"] == ck.capture_rng_state()
    assert trainer2._optimizer.num_update == trainer._optimizer.num_update == 3
    for k, v in params_of(net).items():
        np.testing.assert_array_equal(params_of(net2)[k], v)
    step(net, trainer, 7)
    step(net2, trainer2, 7)
    assert trainer2.learning_rate == trainer.learning_rate
    for k, v in params_of(net).items():
        np.testing.assert_array_equal(params_of(net2)[k], v)


def test_rng_state_round_trip():
    state = json.loads(json.dumps(ck.capture_rng_state()))
    a = (random.random(), np.random.rand(3))
    ck.restore_rng_state(state)
    b = (random.random(), np.random.rand(3))
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_load_without_trainer_states_and_wrong_model(tmp_path):
    net, _ = make_model(steps=0)
    path = ck.save_checkpoint(tmp_path, "best", net, None, {"global_step": 0})
    assert not (path / "optimizer.json").exists()
    ck.load_checkpoint(path, make_model()[0], None, ctx=[mx.cpu()])
    with pytest.raises(ModelFileError, match="optimizer.json: missing"):
        ck.load_checkpoint(path, *make_model())
    other = gluon.nn.Dense(5, in_units=4)
    other.initialize()
    with pytest.raises(ModelFileError, match="model.params"):
        ck.load_checkpoint(path, other, None)
    with pytest.raises(ModelFileError, match="nothere"):
        ck.load_checkpoint(tmp_path / "nothere", other, None)


def test_corrupted_file_is_invalid_and_loader_falls_back(tmp_path, caplog):
    net, trainer = make_model(steps=1)
    save(tmp_path, "epoch-1", 1, net, trainer)
    newest = save(tmp_path, "epoch-2", 2, net, trainer)
    params = newest / "model.params"
    data = bytearray(params.read_bytes())
    data[len(data) // 2] ^= 0xFF
    params.write_bytes(bytes(data))

    assert not ck.validate_checkpoint(newest)
    with pytest.raises(ModelFileError, match="model.params"):
        ck.load_checkpoint(newest, *make_model())
    found = ck.find_checkpoint(tmp_path)  # "latest" names epoch-2, which is corrupt
    assert found == tmp_path / "checkpoints" / "epoch-1"
    assert "model.params" in caplog.text
    assert ck.find_checkpoint(tmp_path, "epoch-2") is None
    (newest / "MANIFEST.json").unlink()
    with pytest.raises(ModelFileError, match="MANIFEST.json"):
        ck.load_checkpoint(newest, *make_model())


def test_newest_by_global_step_without_pointer(tmp_path):
    net, trainer = make_model(steps=1)
    save(tmp_path, "b", 5, net, trainer)
    save(tmp_path, "a", 9, net, trainer)
    save(tmp_path, "c", 7, net, trainer)
    (tmp_path / "checkpoints" / "latest").unlink()
    assert ck.find_checkpoint(tmp_path).name == "a"
    (tmp_path / "checkpoints" / "latest").write_text("../../etc")
    assert ck.find_checkpoint(tmp_path).name == "a"
    assert ck.find_checkpoint(tmp_path / "none") is None


class SimulatedCrash(OSError):
    pass


def crash_at(monkeypatch, index: int | None, calls: list):
    """Make os.rename/replace/fsync and shutil.rmtree crash at call ``index``; dead afterwards."""
    real = {name: getattr(os, name) for name in ("rename", "replace", "fsync", "unlink")}
    real_rmtree = shutil.rmtree
    dead = []

    def wrap(name, fn, counted=True):
        def inner(*args, **kwargs):
            if dead:
                raise SimulatedCrash(f"dead process: {name}")
            if counted:
                calls.append(name)
                if index is not None and len(calls) - 1 == index:
                    dead.append(True)
                    raise SimulatedCrash(f"crash at {name} #{index}")
            return fn(*args, **kwargs)
        return inner

    for name, fn in real.items():
        monkeypatch.setattr(os, name, wrap(name, fn, counted=name != "unlink"))
    monkeypatch.setattr(shutil, "rmtree", wrap("rmtree", real_rmtree))


@pytest.mark.parametrize("existing", [True, False])
def test_crash_at_every_step_leaves_a_valid_checkpoint(tmp_path, monkeypatch, existing):
    net, trainer = make_model(steps=1)
    dry = tmp_path / "dry"
    if existing:
        save(dry, "last", 1, net, trainer)
    calls: list = []
    with monkeypatch.context() as mp:
        crash_at(mp, None, calls)
        save(dry, "last", 2, net, trainer)
    assert "rename" in calls and "replace" in calls and "rmtree" in calls or not existing

    for index in range(len(calls)):
        run = tmp_path / f"run{index}"
        save(run, "other", 0, net, trainer)
        if existing:
            save(run, "last", 1, net, trainer)
        with monkeypatch.context() as mp:
            crash_at(mp, index, [])
            with pytest.raises(SimulatedCrash):
                save(run, "last", 2, net, trainer)
        found = ck.find_checkpoint(run)
        assert found is not None and ck.validate_checkpoint(found), (index, calls[index])
        state = ck.load_checkpoint(found, *make_model())
        assert state["global_step"] in ((1, 2) if existing else (0, 2)), (index, calls[index])
        last = ck.find_checkpoint(run, "last")
        if existing:
            assert ck.load_checkpoint(last, *make_model())["global_step"] in (1, 2)

        save(run, "last", 3, net, trainer)
        assert sorted(os.listdir(run / "checkpoints")) == ["last", "latest", "other"]
        assert ck.load_checkpoint(ck.find_checkpoint(run), *make_model())["global_step"] == 3


def test_prune_keeps_tags_and_restores_interrupted(tmp_path):
    net, trainer = make_model(steps=1)
    for i, tag in enumerate(["epoch-1", "epoch-2", "best"]):
        save(tmp_path, tag, i, net, trainer)
    d = tmp_path / "checkpoints"
    os.rename(d / "best", d / ".old-best-123")  # as left by a crash mid-swap
    (d / ".tmp-epoch-2-99").mkdir()
    (d / ".latest.abc.tmp").write_text("x")
    removed = ck.prune_checkpoints(tmp_path, {"best", "epoch-2"})
    assert sorted(os.listdir(d)) == ["best", "epoch-2", "latest"]
    assert {p.name for p in removed} == {"epoch-1", ".latest.abc.tmp"}
    assert ck.validate_checkpoint(d / "best")


def test_trainer_like_sequence_keeps_best_and_last_epoch(tmp_path):
    net, trainer = make_model(steps=1)
    for epoch in range(1, 4):
        if epoch != 3:  # epochs 1 and 2 improve
            save(tmp_path, "best", epoch, net, trainer)
        save(tmp_path, f"epoch-{epoch:04d}", epoch, net, trainer)
        ck.prune_checkpoints(tmp_path, keep={f"epoch-{epoch:04d}", "best"})
    d = tmp_path / "checkpoints"
    assert sorted(os.listdir(d)) == ["best", "epoch-0003", "latest"]
    assert ck.find_checkpoint(tmp_path) == d / "epoch-0003"
    assert ck.load_checkpoint(ck.find_checkpoint(tmp_path, "best"), net, None)["epoch"] == 2


def test_bad_tags_and_file_names(tmp_path):
    net, _ = make_model()
    for tag in ["latest", "../x", ".hidden", "a/b", ""]:
        with pytest.raises(ValueError):
            ck.save_checkpoint(tmp_path, tag, net, None, {})
    with pytest.raises(ValueError):
        ck.save_checkpoint(tmp_path, "x", net, None, {}, files={"state.json": "{}"})


def test_write_atomic_replaces_and_keeps_mode(tmp_path):
    target = tmp_path / "f.txt"
    ck.write_atomic(target, "héllo")
    assert target.read_text("utf-8") == "héllo"
    os.chmod(target, 0o600)
    ck.write_atomic(target, b"bytes")
    assert target.read_bytes() == b"bytes"
    assert os.stat(target).st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["f.txt"]


@pytest.mark.parametrize("fail", ["write", "fsync", "replace"])
def test_write_atomic_full_disk_leaves_original(tmp_path, monkeypatch, fail):
    target = tmp_path / "report.json"
    target.write_text("original")
    real = getattr(os, fail)
    state = {"n": 0}

    def failing(*args, **kwargs):
        state["n"] += 1
        if fail == "write" and state["n"] == 1:
            return real(args[0], bytes(args[1])[:3])  # a partial write first
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, fail, failing)
    with pytest.raises(OSError) as info:
        ck.write_atomic(target, "new content" * 1000)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == "original"
    assert os.listdir(tmp_path) == ["report.json"]
    ck.write_atomic(tmp_path / "new.json", "x")
    with monkeypatch.context() as mp:
        mp.setattr(os, fail, failing)
        with pytest.raises(OSError):
            ck.write_atomic(tmp_path / "absent.json", "y")
    assert sorted(os.listdir(tmp_path)) == ["new.json", "report.json"]


def _replant(path, name: str, data: bytes) -> None:
    """Write ``name`` into checkpoint ``path`` and fix its manifest, as an attacker would."""
    (path / name).write_bytes(data)
    manifest = json.loads((path / "MANIFEST.json").read_text())
    manifest["files"][name] = {"size": len(data), "sha256": ck._sha256(path / name)}
    (path / "MANIFEST.json").write_text(json.dumps(manifest))


class _Payload:
    """Unpickling this runs ``open(marker, 'w')``: the code a crafted checkpoint could run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_planted_pickle_never_runs(tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    net, trainer = make_model(steps=2)
    path = ck.save_checkpoint(tmp_path / "run", "last", net, trainer, {"global_step": 2})
    payload = pickle.dumps(_Payload(str(marker)))
    # an old-style checkpoint: only the pickle, as mxlstm 0.1 wrote it
    for name in ("optimizer.json", "optimizer.params"):
        (path / name).unlink()
    manifest = json.loads((path / "MANIFEST.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if "optimizer" not in k}
    (path / "MANIFEST.json").write_text(json.dumps(manifest))
    _replant(path, "trainer.states", payload)
    assert ck.validate_checkpoint(path)
    with pytest.raises(ModelFileError, match="pickle"):
        ck.load_checkpoint(path, *make_model())
    ck.load_checkpoint(path, make_model()[0], None)  # the parameters still load
    # the payload in place of the new files: they are parsed as JSON / NDArrays, never run
    path = ck.save_checkpoint(tmp_path / "run2", "last", net, trainer, {"global_step": 2})
    _replant(path, "optimizer.params", payload)
    with pytest.raises(ModelFileError, match="optimizer.params: cannot load"):
        ck.load_checkpoint(path, *make_model())
    _replant(path, "optimizer.json", payload)
    with pytest.raises(ModelFileError, match="optimizer.json: unreadable"):
        ck.load_checkpoint(path, *make_model())
    assert not marker.exists()


def test_optimizer_state_shapes_are_checked(tmp_path):
    net, trainer = make_model(steps=2)
    path = ck.save_checkpoint(tmp_path, "last", net, trainer, {"global_step": 2})
    arrays = mx.nd.load(str(path / "optimizer.params"))
    key = sorted(arrays)[0]
    arrays[key] = mx.nd.zeros((7, 7))
    mx.nd.save(str(path / "optimizer.params"), arrays)
    _replant(path, "optimizer.params", (path / "optimizer.params").read_bytes())
    with pytest.raises(ModelFileError, match="does not fit"):
        ck.load_checkpoint(path, *make_model())


def test_plateau_learning_rate_survives_a_resume(tmp_path):
    net = gluon.nn.Dense(3, in_units=4)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    step(net, trainer, 0)
    trainer.set_learning_rate(0.025)  # what the plateau schedule does
    path = ck.save_checkpoint(tmp_path, "last", net, trainer, {"global_step": 1})
    other = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    ck.load_checkpoint(path, net, other)
    assert other.learning_rate == 0.025 and other._optimizer.num_update == 1
