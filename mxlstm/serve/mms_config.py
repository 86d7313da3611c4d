"""The configuration :class:`~mxlstm.serve.server.Server` generates for Multi Model Server
1.1.11: ``config.properties`` settings and a quiet ``log4j2.xml``.

MMS's built-in log4j2 configuration writes, for every request, an access-log line, the
worker's metric lines (``model_log`` and ``model_metrics``) and debug lines of the frontend;
the one here keeps warnings and errors (``mms_log.log`` and stdout, which
:func:`~mxlstm.serve.server._last_log_line` reads) and the workers' own output
(``model_log.log``: start-up lines, tracebacks), and turns the access log and the metric
logs off. ``metric_time_interval`` makes MMS's system-metrics collector (a Python process
it starts every interval) run hourly instead of every minute.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

LOG_CONFIG = "log4j2.xml"
SYSTEM_METRICS_SECONDS = 3600  # MMS's default: 60 s, a new Python process each time
QUIET_LOGGERS = ("ACCESS_LOG", "MODEL_METRICS", "MMS_METRICS")  # per-request lines: off
WORKER_LOGGER = "com.amazonaws.ml.mms.wlm.WorkerLifeCycle"  # the workers' stdout and stderr


def mms_settings(*, url: str, management_url: str, store: Path, workers: int,
                 max_request_bytes: int, netty_threads: int | None = None) -> dict:
    """``config.properties`` keys and values: both addresses (127.0.0.1), the model store,
    raw request bodies (``decode_input_request=false``: the handler parses them; MMS's own
    JSON decoding kills the worker on invalid JSON), size limits, asynchronous logging,
    hourly system metrics; ``netty_threads`` None keeps MMS's default (one per core)."""
    settings = {
        "inference_address": url, "management_address": management_url,
        "model_store": str(store), "decode_input_request": "false",
        "default_workers_per_model": workers,
        "max_request_size": max_request_bytes, "max_response_size": max_request_bytes,
        "job_queue_size": 1000, "enable_envvars_config": "false",
        "default_response_timeout": 120, "async_logging": "true",
        "metric_time_interval": SYSTEM_METRICS_SECONDS}
    if netty_threads:
        settings["number_of_netty_threads"] = netty_threads
        settings["netty_client_threads"] = netty_threads
    return settings


def properties_text(settings: dict) -> str:
    """``settings`` as a Java properties file (values have no newlines)."""
    for key, value in settings.items():
        if "\n" in f"{key}{value}":
            raise ValueError(f"config value of {key} holds a newline")
    return "".join(f"{k}={v}\n" for k, v in settings.items())


def log_config_text(logs: Path, level: str = "warn") -> str:
    """A log4j2 configuration: ``level`` and above to ``logs/mms_log.log`` and stdout, the
    workers' output to ``logs/model_log.log``, the per-request loggers
    (:data:`QUIET_LOGGERS`) off."""
    log_file = quoteattr(str(Path(logs) / "mms_log.log"))
    model_file = quoteattr(str(Path(logs) / "model_log.log"))
    off = "".join(f'    <Logger name="{name}" level="off" additivity="false"/>\n'
                  for name in QUIET_LOGGERS)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Configuration>\n <Appenders>\n'
        '  <Console name="STDOUT" target="SYSTEM_OUT">\n'
        '   <PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/>\n  </Console>\n'
        f'  <File name="mms_log" fileName={log_file}>\n'
        '   <PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/>\n  </File>\n'
        f'  <File name="model_log" fileName={model_file}>\n'
        '   <PatternLayout pattern="%d{ISO8601} [%-5p] %t - %m%n"/>\n  </File>\n'
        ' </Appenders>\n <Loggers>\n' + off +
        f'    <Logger name="{WORKER_LOGGER}" level="info" additivity="false">\n'
        '     <AppenderRef ref="model_log"/>\n    </Logger>\n'
        f'    <Logger name="io.netty" level="error"/>\n'
        f'    <Logger name="org.apache" level="off"/>\n'
        f'    <Root level="{level}">\n     <AppenderRef ref="STDOUT"/>\n'
        f'     <AppenderRef ref="mms_log"/>\n    </Root>\n </Loggers>\n</Configuration>\n')
