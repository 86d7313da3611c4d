"""Train candidate defaults on several sets and seeds; print a markdown table.

    python scripts/screen_defaults.py --out runs/screen --candidates preset,fcn \
        --sets GunPoint,OSULeaf --seeds 0,1,2 --set train.epochs=30

See mxlstm/bench/defaults.py for the sets and candidates.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mxlstm.bench.defaults import CANDIDATES, SETS, screen, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/screen")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--sets", default="GunPoint,ItalyPowerDemand,OSULeaf,ACSF1")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], help="extra key=value")
    parser.add_argument("--table-only", action="store_true",
                        help="print the table of OUT/results.jsonl")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        extra = dict(item.split("=", 1) for item in args.set)
        unknown = [s for s in args.sets.split(",") if s not in SETS]
        if unknown:
            parser.error(f"unknown sets {unknown}; have {', '.join(SETS)}")
        screen(out, args.candidates.split(","), args.sets.split(","),
               [int(s) for s in args.seeds.split(",")], extra)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    print(table(rows))


if __name__ == "__main__":
    main()
