"""The ``mxlstm`` command: train, evaluate, config (and export, predict, bench, launch).

Every user error prints one line ``mxlstm: error: ...`` and exits with status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from mxlstm.errors import MxlstmError

EXIT_USAGE = 2


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration (defaults < task preset < file < flags)")
    group.add_argument("--task", required=True,
                       help="digits, vowels, uea, text, lm, adding or copy")
    group.add_argument("--config", metavar="FILE.toml",
                       help="TOML file with [data], [model], [train] tables")
    group.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                       help="override one key, e.g. --set model.hidden_size=64 (repeatable)")
    group.add_argument("--data", metavar="PATH", help="shortcut for --set data.path=PATH")
    group.add_argument("--test-data", metavar="PATH",
                       help="shortcut for --set data.test_path=PATH")
    group.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=N")
    group.add_argument("--seed", type=int, help="shortcut for --set train.seed=N")
    group.add_argument("--ctx", help="shortcut for --set train.ctx=... (cpu, gpu:0,1)")


def build_config(args: argparse.Namespace):
    """Effective RunConfig from the task preset, the TOML file and the flags."""
    from mxlstm.tasks import default_config
    from mxlstm.training.config import apply_overrides, parse_set_options, read_toml

    cfg = default_config(args.task)
    if args.config:
        cfg = apply_overrides(cfg, read_toml(args.config), args.config)
    shortcuts = {"data.path": args.data, "data.test_path": args.test_data,
                 "train.epochs": args.epochs, "train.seed": args.seed, "train.ctx": args.ctx}
    flags = {k: v for k, v in shortcuts.items() if v is not None}
    flags.update(parse_set_options(args.set))
    return apply_overrides(cfg, flags, "command line")


def cmd_train(args: argparse.Namespace) -> int:
    from mxlstm import runs

    cfg = build_config(args)
    report = runs.train(cfg, args.out, resume=args.resume, debug=args.debug)
    test = report["test"]
    shown = {k: v for k, v in test.items() if k != "confusion"}
    print(json.dumps({"task": cfg.task, "out": args.out, "best_epoch": report["best_epoch"],
                      "test": shown, "baseline": report["baseline"]}))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mxlstm import runs

    result = runs.evaluate(args.model, args.data, args.test_data)
    print(json.dumps(result))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from mxlstm.training.config import describe

    print(describe(build_config(args)))
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mxlstm", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a task into an output directory")
    _add_config_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="run directory")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test metrics of a trained model directory")
    p.add_argument("--model", required=True, metavar="DIR")
    p.add_argument("--data", metavar="PATH", help="evaluate on this file instead")
    p.add_argument("--test-data", metavar="PATH", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("config", help="print the effective configuration with help")
    _add_config_options(p)
    p.set_defaults(func=cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command != "train":  # train logs to stderr and DIR/train.log itself
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except MxlstmError as err:
        if args.debug:
            raise
        print(f"mxlstm: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mxlstm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
