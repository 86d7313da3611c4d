"""The ``mxlstm`` command: train, evaluate, config, export, predict, serve, inspect, ...

Every user error prints one line ``mxlstm: error: ...`` and exits with status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from mxlstm.errors import MxlstmError
from mxlstm.kernels import check_switches

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
    group.add_argument("--valid-data", metavar="PATH",
                       help="shortcut for --set data.valid_path=PATH")
    group.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=N")
    group.add_argument("--seed", type=int, help="shortcut for --set train.seed=N")
    group.add_argument("--ctx", help="shortcut for --set train.ctx=... (cpu, gpu:0,1)")


def config_sources(args: argparse.Namespace) -> list[tuple[dict, str]]:
    """The keys the user gave: ``(overrides, source)`` of the TOML file, then the flags."""
    from mxlstm.config import parse_set_options
    from mxlstm.config_toml import read_toml

    sources = []
    if args.config:
        from mxlstm.data.validate import special_file_problem
        from mxlstm.errors import ConfigError

        problem = special_file_problem(args.config)  # a FIFO would block the read for ever
        if problem:
            raise ConfigError(f"{args.config}: {problem}, expected a TOML file")
        sources.append((read_toml(args.config, task=args.task), args.config))
    shortcuts = {"data.path": args.data, "data.test_path": args.test_data,
                 "data.valid_path": args.valid_data,
                 "train.epochs": args.epochs, "train.seed": args.seed, "train.ctx": args.ctx}
    flags = {k: v for k, v in shortcuts.items() if v is not None}
    flags.update(parse_set_options(args.set))
    return [*sources, (flags, "command line")]


def build_config(args: argparse.Namespace):
    """Effective RunConfig from the task preset, the TOML file and the flags (unknown keys,
    keys the task ignores and a model too big to allocate are errors)."""
    from mxlstm.tasks import user_config

    return user_config(args.task, layers=config_sources(args))


def cmd_train(args: argparse.Namespace) -> int:
    from mxlstm import runs

    cfg = build_config(args)
    report = runs.train(cfg, args.out, resume=args.resume, debug=args.debug,
                        extend_epochs=args.extend_epochs, explicit=config_sources(args),
                        progress=args.progress, quiet=args.quiet)
    from mxlstm.training.summary import summary_lines

    if report.get("already_finished"):
        print(f"mxlstm: {args.out}: the run is finished ({report.get('epochs_run')} epochs); "
              f"nothing to train (--extend-epochs N trains N more)", file=sys.stderr)
    elif not args.quiet:
        print("\n".join(summary_lines(report, args.out)), file=sys.stderr)
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


def cmd_report(args: argparse.Namespace) -> int:
    from mxlstm.training.report_page import write_report_page

    page, figures = write_report_page(args.run)
    if not figures:
        print("mxlstm: no figures drawn (matplotlib is missing, or the run has no epochs "
              "yet): pip install 'mxlstm[plot]'", file=sys.stderr)
    print(json.dumps({"page": str(page), "figures": [str(f) for f in figures]}))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from mxlstm.tasks import config_file_text

    sys.stdout.write(config_file_text(build_config(args)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mxlstm.deploy import export_model, export_onnx
    from mxlstm.errors import ConfigError

    if args.int8 and not args.onnx:
        raise ConfigError("--int8 quantizes the ONNX graph: give it with --onnx")

    meta = export_model(args.model, args.out, tag=args.tag, streaming=args.streaming,
                        fixed_length=args.fixed_length)
    result = {"prefix": args.out, "task": meta["task"], "kind": meta["kind"],
              "inputs": meta["input"]["names"], "streaming": meta["streaming"],
              "fixed_length": meta["input"]["fixed_length"],
              "max_abs_diff": meta["verification"]["max_abs_diff"]}
    if args.onnx:
        result["onnx"] = export_onnx(args.out, model_dir=args.model, int8=args.int8)
    if args.mar:
        from mxlstm.serve.archive import write_archive

        result["mar"] = str(write_archive(args.out))
    print(json.dumps(result))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from mxlstm.deploy.predictor import (
        ModelFilesError,
        Predictor,
        PredictorError,
        predict_file,
        read_options,
    )
    from mxlstm.errors import DataError, ModelFileError

    try:
        answers = predict_file(Predictor(args.model, backend=args.backend), args.input,
                               args.top_k,
                               **read_options(args))
    except ModelFilesError as err:
        raise ModelFileError(str(err)) from None
    except PredictorError as err:
        raise DataError(str(err)) from None
    for answer in answers:
        print(json.dumps(answer, ensure_ascii=False))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from mxlstm.inspect.command import run_inspect

    print(json.dumps(run_inspect(args.model, args.out, args.data, args.index, args.unit,
                                 args.tag, args.steps, args.max_examples, args.max_tokens)))
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    from mxlstm.launch import launch

    logging.getLogger("mxlstm.launch").setLevel(logging.INFO)
    command = args.worker_command[1:] if args.worker_command[:1] == ["--"] else \
        args.worker_command
    return launch(args.num_workers, args.num_servers, command, port=args.port,
                  timeout=args.timeout, finish_grace=args.finish_grace,
                  stall_timeout=args.stall_timeout or None)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


EXAMPLES = {
    "train": ["mxlstm train --task digits --out runs/digits",
              "mxlstm train --task text --data my.tsv --out runs/mine",
              "mxlstm train --task digits --out runs/digits --resume --extend-epochs 10"],
    "evaluate": ["mxlstm evaluate --model runs/digits",
                 "mxlstm evaluate --model runs/vowels --data other.ts"],
    "report": ["mxlstm report runs/digits   # then open runs/digits/report.html"],
    "config": ["mxlstm config --task lm > run.toml",
               "mxlstm train --task lm --config run.toml --out runs/lm"],
    "export": ["mxlstm export --model runs/digits --out export/digits",
               "mxlstm export --model runs/digits --out export/digits-fixed --fixed-length"],
    "predict": ["mxlstm predict --model export/digits --input rows.npy",
                "cat reviews.txt | mxlstm predict --model export/text --input -"],
    "inspect": ["mxlstm inspect --model runs/digits --index 0 1 --out inspect/digits"],
    "launch": ["mxlstm launch -n 2 -s 1 -- mxlstm train --task digits --out runs/dist"],
}


def _version() -> str:
    from importlib import metadata

    from mxlstm import __version__

    try:
        mxnet = metadata.version("mxnet")
    except metadata.PackageNotFoundError:
        mxnet = "not installed"
    return f"mxlstm {__version__} (mxnet {mxnet}, Python {sys.version.split()[0]})"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mxlstm", description="Train LSTM sequence models on MXNet, look at the runs, "
        "export and serve them. Every command prints one line 'mxlstm: error: ...' and "
        "exits 2 on bad input.", epilog="Help of one command: mxlstm COMMAND --help")
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    def add(name: str, **kwargs) -> argparse.ArgumentParser:
        """A subcommand whose --help ends with examples."""
        lines = EXAMPLES.get(name)
        if lines:
            kwargs.setdefault("epilog", "examples:\n" + "\n".join("  " + x for x in lines))
            kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        kwargs.setdefault("description", kwargs.get("help"))
        return sub.add_parser(name, **kwargs)

    p = add("train", help="train a task into an output directory")
    _add_config_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="run directory")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly as it was configured, from its "
                        "latest checkpoint (a finished run is not trained again)")
    p.add_argument("--extend-epochs", type=_positive_int, default=0, metavar="N",
                   help="with --resume: train N epochs more than the run was configured for "
                        "(the learning-rate schedule is rebuilt for the new total)")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bars per phase: auto = only on a terminal (else a status "
                        "line in the log every 30 s)")
    p.add_argument("--quiet", action="store_true",
                   help="only warnings and errors on stderr (stdout keeps its JSON line)")
    p.set_defaults(func=cmd_train)

    p = add("evaluate", help="test metrics of a trained model directory")
    p.add_argument("--model", required=True, metavar="RUN_DIR",
                   help="a run directory made by mxlstm train --out (not an export prefix)")
    p.add_argument("--data", metavar="PATH", help="evaluate on this file instead")
    p.add_argument("--test-data", metavar="PATH", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_evaluate)

    p = add("report", help="(re)draw the figures of a run and write its "
                       "report.html, one self-contained page to open in a browser")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory (mxlstm train --out)")
    p.set_defaults(func=cmd_report)

    p = add("bench", help="throughput benchmarks (python -m mxlstm.bench ...)",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER,
                   help="run | roof | profile | all | setup-torch, and their options")

    p = add("config", help="print the effective configuration as a TOML file "
                       "for --config (the keys the task uses, with help)")
    _add_config_options(p)
    p.set_defaults(func=cmd_config)

    p = add("export", help="export a trained model for deployment "
                       "(PREFIX-symbol.json, PREFIX-0000.params, PREFIX-meta.json)")
    p.add_argument("--model", required=True, metavar="RUN_DIR",
                   help="a run directory made by mxlstm train --out")
    p.add_argument("--out", required=True, metavar="PREFIX", help="prefix of the files")
    p.add_argument("--tag", default="best", help="checkpoint to export (best, latest, ...)")
    p.add_argument("--streaming", action="store_true",
                   help="stateful per-step graph (unidirectional sequence models)")
    p.add_argument("--fixed-length", action="store_true",
                   help="no valid_length input: every row has the run's one length T "
                        "(the fastest graph; refused when the data have several lengths)")
    p.add_argument("--onnx", action="store_true",
                   help="also write PREFIX.onnx (native ONNX LSTM/GRU/RNN with "
                        "sequence_lens, verified in ONNX Runtime, or refused with the reason)")
    p.add_argument("--int8", action="store_true",
                   help="with --onnx: also PREFIX-int8.onnx (ONNX Runtime int8: dynamic, "
                        "series convolutions static on training samples)")
    p.add_argument("--mar", action="store_true",
                   help="also PREFIX.mar for mxlstm serve (Multi Model Server; mxlstm[serve])")
    p.set_defaults(func=cmd_export)

    from mxlstm.serve.command import add_serve_options  # its flags, examples and command

    add_serve_options(add("serve", help="serve model archives (PREFIX.mar) over HTTP on "
                          "127.0.0.1 with Multi Model Server until Ctrl-C (needs "
                          "mxlstm[serve] and Java)"), _positive_int)

    p = add("predict", help="predict raw inputs with an exported model")
    p.add_argument("--model", required=True, metavar="PREFIX",
                   help="export prefix (mxlstm export --out PREFIX), not a run directory")
    p.add_argument("--input", required=True, metavar="FILE",
                   help="'-' for standard input; text models: one text per line, .tsv, "
                        ".csv, .jsonl; numeric models: .npy, .npz, .ts, CSV series (label "
                        "column optional), IDX images")
    # the options of the standalone predictor (predictor_inputs.add_input_options), here
    # without importing mxlstm.deploy (MXNet) just to build the parser
    p.add_argument("--top-k", type=int, metavar="K",
                   help="the K most probable labels (classifiers) or next tokens (language "
                        "models), 1..classes; default 5, or all if fewer")
    p.add_argument("--format", choices=("npy", "npz", "ts", "idx", "csv", "tsv", "jsonl",
                                        "lines"),
                   help="input format (default: from the file name; sniffed on stdin)")
    p.add_argument("--label-column", choices=("auto", "yes", "no"), default="auto",
                   help="CSV series: whether the last value of a row is its label "
                        "(default: detected from the export, refused when ambiguous)")
    p.add_argument("--max-input-mb", type=float, default=256.0, metavar="MB",
                   help="refuse larger input files (default %(default)g)")
    p.add_argument("--backend", choices=("mxnet", "onnxruntime", "onnxruntime-int8"),
                   default="mxnet", help="run PREFIX-symbol.json in MXNet (default), or "
                   "PREFIX.onnx / PREFIX-int8.onnx in ONNX Runtime (mxlstm export --onnx)")
    p.set_defaults(func=cmd_predict)

    p = add("inspect", help="look inside the memory cell of a trained model: "
                       "gates, cell state, saturation, gradient flow (trace.npz, "
                       "summary.json, PNGs with matplotlib)")
    p.add_argument("--model", required=True, metavar="RUN_DIR",
                   help="a run directory made by mxlstm train --out")
    p.add_argument("--data", metavar="PATH", help="examples from this file (the task's "
                   "training format) instead of the run's test split")
    p.add_argument("--index", type=int, nargs="+", metavar="I",
                   help="examples to trace and draw (default 0); language models: windows")
    p.add_argument("--unit", type=int, nargs="+", metavar="K",
                   help="units to draw in the heatmaps (default: all, or 16 chosen ones)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--tag", default="best", help="checkpoint (best, latest, ...)")
    p.add_argument("--steps", type=int, default=0, metavar="T",
                   help="language models: tokens per window (default 200 chars / 50 words)")
    p.add_argument("--max-examples", type=int, default=256, metavar="N",
                   help="examples behind summary.json (default %(default)s)")
    p.add_argument("--max-tokens", type=int, default=100_000, metavar="N",
                   help="language models: tokens behind summary.json (default %(default)s)")
    p.set_defaults(func=cmd_inspect)

    p = add("launch", help="run a command as the workers of a local "
                       "parameter-server job (kvstore dist_sync)",
                       usage="mxlstm launch [-n N] [-s S] [--port P] [--timeout SEC] "
                             "[--finish-grace SEC] [--stall-timeout SEC] "
                             "-- mxlstm train ...")
    p.add_argument("-n", "--num-workers", type=int, default=2, help="workers (default 2)")
    p.add_argument("-s", "--num-servers", type=int, default=1, help="servers (default 1)")
    p.add_argument("--port", type=int, help="scheduler port on 127.0.0.1 (default: free)")
    p.add_argument("--timeout", type=float, metavar="SEC",
                   help="stop the whole job after SEC seconds (default: no limit)")
    p.add_argument("--finish-grace", type=float, metavar="SEC", default=60.0,
                   help="once a worker has finished, stop the job if the others are still "
                        "running after SEC seconds (default 60)")
    p.add_argument("--stall-timeout", type=float, metavar="SEC", default=600.0,
                   help="stop the job when no worker has used any CPU for SEC seconds "
                        "(default 600; 0: never)")
    p.add_argument("worker_command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                   help="the command every worker runs")
    p.set_defaults(func=cmd_launch)
    return parser


def _quiet_after_interrupt(unraisable) -> None:
    """After Ctrl-C: an NDArray the interrupt left half-built (no ``handle`` yet) fails in
    ``__del__`` when it is collected; that is not the user's concern, so no traceback."""
    if isinstance(unraisable.exc_value, AttributeError) and "handle" in str(
            unraisable.exc_value):
        return
    sys.__unraisablehook__(unraisable)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own parser takes every option after the word
        from mxlstm.bench.driver import main as bench_main
        return bench_main(argv[1:], prog="mxlstm bench")
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command != "train":  # train logs to stderr and DIR/train.log itself
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        check_switches()
        return func(args)
    except MxlstmError as err:
        if args.debug:
            raise
        print(f"mxlstm: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mxlstm: interrupted", file=sys.stderr)
        sys.unraisablehook = _quiet_after_interrupt
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
