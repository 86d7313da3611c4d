"""The generated Multi Model Server config: loopback addresses, raw bodies, asynchronous
logging, hourly system metrics, and a log4j2 file that turns the per-request loggers off
(no server needed; ``tests/serve/test_server.py`` checks a running server uses them)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mxlstm.serve.mms_config import (
    QUIET_LOGGERS,
    WORKER_LOGGER,
    log_config_text,
    mms_settings,
    properties_text,
)


def _settings(**kw) -> dict:
    return mms_settings(url="http://127.0.0.1:20001", management_url="http://127.0.0.1:20002",
                        store=Path("/s"), workers=2, max_request_bytes=1024, **kw)


def test_properties_hold_the_serving_settings():
    lines = properties_text(_settings()).splitlines()
    for line in ("inference_address=http://127.0.0.1:20001",
                 "management_address=http://127.0.0.1:20002", "model_store=/s",
                 "decode_input_request=false", "async_logging=true",
                 "metric_time_interval=3600", "default_workers_per_model=2",
                 "max_request_size=1024", "enable_envvars_config=false"):
        assert line in lines
    assert not any(x.startswith("number_of_netty_threads") for x in lines)
    tuned = properties_text(_settings(netty_threads=1)).splitlines()
    assert "number_of_netty_threads=1" in tuned and "netty_client_threads=1" in tuned


def test_a_newline_in_a_value_is_refused():
    with pytest.raises(ValueError, match="newline"):
        properties_text({"model_store": "/s\nvmargs=-Xmx1m"})


def test_log_config_turns_per_request_loggers_off(tmp_path):
    root = ET.fromstring(log_config_text(tmp_path / "logs & more"))
    levels = {x.get("name"): x.get("level") for x in root.iter("Logger")}
    assert {levels[name] for name in QUIET_LOGGERS} == {"off"}
    assert levels[WORKER_LOGGER] == "info"
    assert root.find("Loggers/Root").get("level") == "warn"
    files = {x.get("name"): x.get("fileName") for x in root.iter("File")}
    assert files["mms_log"] == str(tmp_path / "logs & more" / "mms_log.log")
