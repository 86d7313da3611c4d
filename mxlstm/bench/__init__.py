"""Benchmarks: training and inference throughput of the LSTM paths against their peers.

``python -m mxlstm.bench all --pairs 5 --out docs/benchmarks.md`` runs every measurement
in its own fresh process, interleaved, and writes the report; see :mod:`mxlstm.bench.driver`.

Modules: :mod:`~mxlstm.bench.configs` (what is measured, FLOP count; no framework imports),
:mod:`~mxlstm.bench.mxnet_runner` (MXNet rows, GEMM roof, profiler),
:mod:`~mxlstm.bench.torch_runner` (PyTorch peer in its own venv, never imports mxnet),
:mod:`~mxlstm.bench.report` (statistics, driver, Markdown/JSON).
"""
