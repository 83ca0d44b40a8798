"""Run every notebook with its default (classroom) parameters, as a course would, and time each one.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_notebooks.py [--out results.json]`` (several minutes).
Prints each notebook's wall time and share of the total; the target is the whole suite under 10 minutes
on 2 cores. Outputs go to a temporary folder (the committed notebooks stay without outputs).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    import papermill

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", nargs="*", default=None, help="notebook stems to run (default: all)")
    args = parser.parse_args()
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    if args.only:
        notebooks = [p for p in notebooks if p.stem in args.only]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in notebooks:
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            papermill.execute_notebook(str(path), str(Path(tmp) / path.name), parameters={"profile": "cpu"},
                                       cwd=str(path.parent), kernel_name="python3", progress_bar=False)
            rows.append({"notebook": path.stem, "wall_s": round(time.perf_counter() - t0, 1),
                         "load_before": round(load, 1)})
            print(json.dumps(rows[-1]), flush=True)
    total = sum(r["wall_s"] for r in rows)
    print(f"\n| notebook | wall (s) | share | load before |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['notebook']} | {r['wall_s']:.0f} | {100 * r['wall_s'] / total:.0f} % | {r['load_before']} |")
    print(f"| all | {total:.0f} | 100 % | |")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "total_s": total,
                                              "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}, indent=1) + "\n")


if __name__ == "__main__":
    main()
