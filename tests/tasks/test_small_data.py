"""train.small_data: the series preset's protocol for training splits under 300 series
(every series trains, the final epoch is kept, 3 seeds averaged), chosen from the data,
recorded resolved, and dropped when the user chooses the protocol or the length."""

from __future__ import annotations

import logging

from mxlstm.tasks import default_config, resolve_small_data, user_config


def test_small_split_gets_the_small_data_protocol(caplog):
    cfg = user_config("uea", flags={"data.name": "GunPoint"})
    assert cfg.train.small_data == 300
    with caplog.at_level(logging.INFO, logger="mxlstm.tasks"):
        got = resolve_small_data(cfg)
    assert (got.train.select, got.data.valid_fraction, got.train.ensemble) == ("last", 0.0, 3)
    assert got.train.small_data == 0  # recorded resolved: members and resumes see the keys
    assert "50 training series" in caplog.text
    assert resolve_small_data(got) == got


def test_a_split_at_or_above_the_threshold_keeps_validation_selection():
    cfg = user_config("uea", flags={"data.name": "GunPoint", "train.small_data": 50})
    got = resolve_small_data(cfg)
    assert (got.train.select, got.data.valid_fraction, got.train.ensemble) == ("best", 0.2, 1)
    assert got.train.small_data == 0


def test_the_users_protocol_or_length_drops_the_presets_rule():
    for flags in ({"train.epochs": 5}, {"train.max_batches": 3}, {"train.ensemble": 1},
                  {"train.select": "best"}, {"data.valid_fraction": 0.3},
                  {"data.valid_path": "v.ts"}):
        cfg = user_config("uea", flags={"data.name": "GunPoint", **flags})
        assert cfg.train.small_data == 0, flags
    kept = user_config("uea", flags={"data.name": "GunPoint", "train.epochs": 5,
                                     "train.small_data": 300})
    assert resolve_small_data(kept).train.ensemble == 3  # given explicitly: kept


def test_only_the_series_presets_use_it():
    assert default_config("vowels").train.small_data == 300
    assert default_config("series-regression").train.small_data == 300
    for task in ("digits", "text", "lm", "adding"):
        assert default_config(task).train.small_data == 0


def test_a_config_file_that_states_it_keeps_it_and_a_resume_keeps_the_runs_protocol(
        tmp_path):
    """A printed config (every key, train.small_data among them) reads back armed; a
    resumed run keeps the protocol recorded in its config.json, not a new resolution."""
    from mxlstm.runs import _small_data_protocol

    every = {"train.small_data": 300, "train.select": "best", "train.ensemble": 1,
             "data.valid_fraction": 0.2, "train.epochs": 80}
    assert user_config("uea", flags={"data.name": "GunPoint", **every}).train.small_data == 300
    recorded = user_config("uea", flags={"data.name": "GunPoint", "train.epochs": 3})
    (tmp_path / "config.json").write_text(recorded.to_json())
    armed = user_config("uea", flags={"data.name": "GunPoint"})
    resumed = _small_data_protocol(armed, tmp_path, resume=True)
    assert (resumed.train.select, resumed.train.ensemble, resumed.train.small_data) == (
        "best", 1, 0)
    assert _small_data_protocol(armed, tmp_path / "new", resume=False).train.ensemble == 3


def test_the_rule_is_said_on_stderr_before_the_run_starts(tmp_path, capsys):
    from mxlstm.runs import _small_data_protocol

    armed = user_config("uea", flags={"data.name": "GunPoint"})
    _small_data_protocol(armed, tmp_path, resume=False)
    assert capsys.readouterr().err.strip() == (
        "mxlstm: fewer than train.small_data=300 training series, so train.select=last, "
        "data.valid_fraction=0, train.ensemble=3 (every series trains; the final epochs "
        "of 3 seeds are averaged)")
    _small_data_protocol(armed, tmp_path, resume=False, quiet=True)
    assert capsys.readouterr().err == ""


def test_a_users_file_is_read_once_for_the_count_and_the_run(tmp_path, monkeypatch):
    """The splits read to count training series go to the prepare that follows (once);
    a changed file, or a second prepare, reads the file again."""
    import numpy as np

    from mxlstm import tasks
    from mxlstm.tasks import sequences

    rng = np.random.default_rng(0)
    path = tmp_path / "own.npz"
    np.savez(path, x=rng.normal(size=(40, 12, 1)).astype(np.float32),
             y=np.arange(40) % 2)
    reads = []
    original = sequences.read_series_file
    monkeypatch.setattr(sequences, "read_series_file",
                        lambda p: (reads.append(p), original(p))[1])
    cfg = resolve_small_data(user_config("uea", flags={"data.path": str(path)}))
    assert cfg.train.ensemble == 3 and len(reads) == 1
    first = tasks.prepare(cfg)
    assert len(reads) == 1  # handed over, not read again
    tasks.prepare(cfg)
    assert len(reads) == 2  # nothing kept for a second prepare: no shared objects
    resolve_small_data(user_config("uea", flags={"data.path": str(path)}))
    np.savez(path, x=rng.normal(size=(40, 12, 1)).astype(np.float32), y=np.arange(40) % 2)
    tasks.prepare(cfg)
    assert len(reads) == 4  # the file changed after the count: read afresh
    assert first.steps_per_epoch > 0
