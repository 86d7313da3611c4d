"""PyTorch CPU peer: ``nn.LSTM`` models of the same configs, in their own venv.

PyTorch is optional and lives in ``.venv-torch`` (see :func:`create_torch_venv`). That venv
has no mxnet, so this file runs there as a script and loads ``configs.py`` by path instead
of importing the ``mxlstm`` package::

    .venv-torch/bin/python mxlstm/bench/torch_runner.py --config classifier --mode train \
        --steps 20 --warmup 3 --threads 2

It never imports mxnet; torch is imported inside :func:`run` only, so the MXNet-side driver
can import this module for the venv helpers. PyTorch runs eagerly (``nn.LSTM`` is one fused
op already); there is no hybridization to match.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

TORCH_VERSION = "2.13.0"  # a local CPU wheel: never let pip pick another version
HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
VENV = REPO_ROOT / ".venv-torch"


def torch_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def create_torch_venv(venv: Path = VENV, python: str = "python3.11") -> None:
    """``python3.11 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.13.0 numpy``."""
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", f"torch=={TORCH_VERSION}", "numpy"],
                   check=True)


def torch_status(venv: Path = VENV) -> str | None:
    """None when the venv's torch imports, else why not (reported in place of the rows)."""
    py = torch_python(venv)
    if not py.exists():
        return "not installed"
    try:
        probe = subprocess.run([str(py), "-c", "import numpy, torch; print(torch.__version__)"],
                               capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"not installed (broken: {exc})"
    if probe.returncode != 0:
        tail = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"not installed (broken: {tail})"
    return None


def run_command(config: str, mode: str, steps: int, warmup: int, threads: int,
                venv: Path = VENV) -> list[str]:
    """The command line of one PyTorch measurement."""
    return [str(torch_python(venv)), str(HERE / "torch_runner.py"), "--config", config,
            "--mode", mode, "--steps", str(steps), "--warmup", str(warmup),
            "--threads", str(threads)]


def _configs() -> ModuleType:
    """``configs.py`` beside this file, loaded without importing the ``mxlstm`` package."""
    name = "mxlstm_bench_configs"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "configs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run(config: str, mode: str, steps: int, warmup: int, threads: int) -> dict[str, Any]:
    """Time ``steps`` PyTorch steps (after ``warmup``) and return the JSON record."""
    import numpy as np
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    c = _configs()
    cfg = c.get_config(config)
    torch.set_num_threads(threads)
    torch.manual_seed(c.SEED)
    batch_first = cfg.layout == "NTC"

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(cfg.vocab_size, cfg.input_size) if cfg.task == "lm" \
                else None
            self.lstm = nn.LSTM(cfg.input_size, cfg.hidden_size, cfg.num_layers,
                                batch_first=batch_first)
            self.head = nn.Linear(cfg.hidden_size, cfg.head_size)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.embed is not None:
                x = self.embed(x)
            out, _ = self.lstm(x)
            if cfg.task != "lm":
                out = out[:, -1] if batch_first else out[-1]
            return self.head(out)

    def loss_fn(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if cfg.task == "lm":
            return F.cross_entropy(pred.reshape(-1, cfg.vocab_size), y.reshape(-1))
        if cfg.task == "classify":
            return F.cross_entropy(pred, y)
        return F.mse_loss(pred, y)

    net = Net()
    x_np, y_np = c.make_batch(cfg)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    if mode == "train":
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def step() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            return loss.detach()
    else:
        net.eval()

        def step() -> torch.Tensor:
            with torch.inference_mode():
                return net(x)

    times, last = c.time_steps(step, steps, warmup)
    key = "loss" if mode == "train" else "output_mean"
    return c.result_line(cfg, "torch", mode, times, warmup, threads,
                         **{key: float(last.float().mean())},
                         framework=f"torch {torch.__version__}",
                         python=platform.python_version(), numpy=np.__version__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One PyTorch measurement; prints JSON.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--mode", choices=("train", "infer"), required=True)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    cfg = _configs().get_config(args.config)
    steps = args.steps if args.steps is not None else cfg.steps(args.mode)
    warmup = args.warmup if args.warmup is not None else cfg.warmup
    print(json.dumps(run(cfg.name, args.mode, steps, warmup, args.threads)), flush=True)


if __name__ == "__main__":
    main()
