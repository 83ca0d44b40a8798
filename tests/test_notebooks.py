"""Notebook regression: every notebook runs top to bottom and still measures what it measured.

Each notebook has a cell tagged ``parameters`` (papermill overrides it with the cpu profile and
``quick=True``) and ends with a cell that writes its key numbers as JSON to ``metrics_path``
(notebook 01: the light-stage recovery table; 08: the render PSNRs; 00: the normal-map round trip;
03-06: each reflectance network's held-out metrics and its baselines', with the committed weights;
09: the end-to-end table against ground truth). :func:`test_a_degraded_stage_fails_the_comparison`
shows the comparison has teeth: notebook 09 with one network's weights spoiled on purpose fails it.
The numbers are compared with ``tests/baselines/notebooks.json``, where each has a tolerance and a
direction: ``higher`` (better when higher: fails when it drops by more than ``tol``), ``lower``
(fails when it rises by more than ``tol``) or ``equal`` (fails when it moves by more than ``tol``
either way). After an intended change, refresh the stored numbers on purpose with
``make baselines`` (``pytest tests/test_notebooks.py --update-baselines``) and commit the diff.

Committed notebooks carry no outputs: :func:`test_committed_notebooks_have_no_outputs` runs
``nbstripout --verify`` on them, and ``make strip`` removes outputs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
COMMITTED = NOTEBOOKS + sorted((REPO / "tests").rglob("*.ipynb"))
BASELINES = Path(__file__).with_name("baselines") / "notebooks.json"
DIRECTIONS = ("higher", "lower", "equal")
# ids are kept: they are stable in this repository and nbstripout would otherwise renumber them
STRIP = [sys.executable, "-m", "nbstripout", "--keep-id"]


def _parameters_cell(nb):
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return tagged[0] if tagged else None


def _read_baselines() -> dict:
    return json.loads(BASELINES.read_text())


def _fmt(x) -> str:
    return f"{x:.6g}" if isinstance(x, (int, float)) else repr(x)


def compare_numbers(measured: dict, baseline: dict) -> list[str]:
    """One line per number that is missing, new, or worse than its baseline by more than its tolerance."""
    problems = []
    for key in sorted(set(baseline) - set(measured)):
        problems.append(f"{key}: in the baselines but no longer recorded by the notebook")
    for key in sorted(set(measured) - set(baseline)):
        problems.append(f"{key} = {measured[key]!r}: not in {BASELINES.name}; add it with a tolerance and direction")
    for key in sorted(set(measured) & set(baseline)):
        b, value = baseline[key], measured[key]
        if b.get("tol") is None or b.get("better") not in DIRECTIONS:
            problems.append(f"{key}: baseline needs a numeric 'tol' and 'better' in {DIRECTIONS}, got {b}")
            continue
        ref, tol, better = b["value"], b["tol"], b["better"]
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            ok = value == ref
        elif better == "higher":
            ok = value >= ref - tol
        elif better == "lower":
            ok = value <= ref + tol
        else:
            ok = abs(value - ref) <= tol
        if not ok:
            rule = "must stay within tol" if better == "equal" else f"{better} is better"
            problems.append(f"{key} = {_fmt(value)}, baseline {_fmt(ref)} (tol {tol:g}, {rule})")
    return problems


def _store_baselines(stem: str, measured: dict) -> None:
    data = _read_baselines()
    entries = data.setdefault(stem, {})
    for key, value in measured.items():
        # new numbers get no tolerance on purpose: the comparison refuses them until one is chosen
        entries.setdefault(key, {"value": None, "tol": None, "better": None})["value"] = value
    tmp = BASELINES.with_name(BASELINES.name + ".part")
    tmp.write_text(format_baselines(data))
    os.replace(tmp, BASELINES)


def format_baselines(data: dict) -> str:
    """JSON with one line per number, so a refresh shows as a readable diff."""
    blocks = []
    for stem, entries in data.items():
        if not isinstance(entries, dict):
            blocks.append(f" {json.dumps(stem)}: {json.dumps(entries)}")
            continue
        lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in entries.items())
        blocks.append(f" {json.dumps(stem)}: {{\n{lines}\n }}")
    return "{\n" + ",\n".join(blocks) + "\n}\n"


# ---- the comparison itself (fast) ------------------------------------------------------------


def test_compare_numbers_fails_on_a_worse_number_and_passes_within_tolerance():
    base = {"psnr": {"value": 30.0, "tol": 0.5, "better": "higher"},
            "err": {"value": 2.0, "tol": 0.1, "better": "lower"},
            "n": {"value": 7, "tol": 0, "better": "equal"}}
    assert compare_numbers({"psnr": 29.6, "err": 2.05, "n": 7}, base) == []
    assert compare_numbers({"psnr": 35.0, "err": 0.5, "n": 7}, base) == []  # better is fine
    worse = compare_numbers({"psnr": 29.4, "err": 2.2, "n": 8}, base)
    assert [line.split(" ")[0] for line in worse] == ["err", "n", "psnr"]
    assert "no longer recorded" in compare_numbers({"psnr": 30.0, "err": 2.0}, base)[0]
    assert "add it with a tolerance" in compare_numbers({"psnr": 30, "err": 2, "n": 7, "new": 1.0}, base)[0]
    assert "needs a numeric 'tol'" in compare_numbers({"x": 1.0}, {"x": {"value": 1.0, "tol": None, "better": None}})[0]
    assert compare_numbers({"psnr": math.inf}, {"psnr": {"value": math.inf, "tol": 0.5, "better": "higher"}}) == []
    assert compare_numbers({"psnr": math.nan}, {"psnr": {"value": 30.0, "tol": 0.5, "better": "higher"}}) != []
    assert "None" in compare_numbers({"psnr": None}, {"psnr": {"value": 30.0, "tol": 0.5, "better": "higher"}})[0]


def test_every_notebook_has_baselines_with_tolerances():
    data = _read_baselines()
    assert sorted(k for k in data if not k.startswith("_")) == [p.stem for p in NOTEBOOKS]
    for stem in (p.stem for p in NOTEBOOKS):
        assert data[stem], f"{stem} records no numbers"
        for key, entry in data[stem].items():
            assert set(entry) == {"value", "tol", "better"}, (stem, key)
            assert entry["better"] in DIRECTIONS and entry["tol"] is not None and entry["tol"] >= 0, (stem, key)


# ---- committed notebooks ---------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_a_tagged_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    cell = _parameters_cell(nb)
    assert cell is not None, f"{path.name} needs a cell tagged 'parameters' for papermill"
    for name in ("profile", "quick", "metrics_path"):
        assert f"{name} =" in cell.source, f"{path.name}: the parameters cell lacks {name!r}"
    assert "metrics_path" in nb.cells[-1].source, f"{path.name}: the last cell should record the key numbers"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_cells_have_unique_ids(path):
    """nbformat 4.5 wants an id on every cell (it fills a missing one silently now, and will refuse it)."""
    import json

    ids = [c.get("id") for c in json.loads(path.read_text())["cells"]]
    assert None not in ids, f"{path.name}: cell {ids.index(None)} has no id"
    assert len(set(ids)) == len(ids), f"{path.name}: repeated cell ids"


def _with_outputs(path: Path) -> Path:
    """A copy of the first notebook with one output and an execution count, as a saved run leaves it."""
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    cell.execution_count = 3
    nbformat.write(nb, path)
    return path


def test_committed_notebooks_have_no_outputs(tmp_path):
    # one nbstripout run over the committed notebooks plus a copy with outputs: the copy shows the
    # check can fail, and it must be the only notebook named
    dirty = _with_outputs(tmp_path / "with_outputs.ipynb")
    result = subprocess.run(STRIP + ["--verify", str(dirty)] + [str(p) for p in COMMITTED],
                            capture_output=True, text=True)
    named = [line.rsplit(" ", 1)[-1] for line in result.stdout.splitlines() if "would have stripped" in line]
    assert result.returncode != 0 and str(dirty) in named
    assert named == [str(dirty)], f"notebooks committed with outputs (run `make strip`): {named[1:]}"


@pytest.mark.slow
def test_make_strip_removes_outputs_and_keeps_the_cells(tmp_path):
    dirty = _with_outputs(tmp_path / "with_outputs.ipynb")
    subprocess.run(STRIP + [str(dirty)], check=True)  # what `make strip` runs
    assert subprocess.run(STRIP + ["--verify", str(dirty)], capture_output=True).returncode == 0
    stripped, original = nbformat.read(dirty, as_version=4), nbformat.read(NOTEBOOKS[0], as_version=4)
    assert [(c.id, c.source) for c in stripped.cells] == [(c.id, c.source) for c in original.cells]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in stripped.cells
               if c.cell_type == "code")


# ---- running them (slow) ---------------------------------------------------------------------


#: Seconds one cell may run in these tests (the slowest quick-parameter cell takes about a minute). Seen once
#: in CI: nbclient waited forever on notebook 08's ipywidgets cell while its kernel sat idle; a cell that
#: does not answer in time is run again once, then fails the test, rather than hanging CI.
CELL_TIMEOUT_S = 300


def run_notebook(path: Path, tmp_path: Path, **extra) -> tuple[dict, object]:
    """Run ``path`` with papermill on the quick cpu parameters (plus ``extra``); ``(numbers, notebook)``."""
    import papermill  # only here: importing it costs a second of every fast run

    numbers = tmp_path / "numbers.json"
    parameters = {"profile": "cpu", "quick": True, "metrics_path": str(numbers), **extra}
    if "out_dir =" in _parameters_cell(nbformat.read(path, as_version=4)).source:
        parameters["out_dir"] = str(tmp_path / "out")
    out = tmp_path / path.name
    for attempt in range(2):
        try:
            papermill.execute_notebook(str(path), str(out), parameters=parameters, cwd=str(path.parent),
                                       kernel_name="python3", progress_bar=False, execution_timeout=CELL_TIMEOUT_S)
            break
        except TimeoutError:  # nbclient's CellTimeoutError: the kernel never answered; run it once more
            if attempt:
                raise
    return json.loads(numbers.read_text()), nbformat.read(out, as_version=4)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_keeps_its_numbers(path, tmp_path, update_baselines):
    measured, nb = run_notebook(path, tmp_path)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} should show pictures"
    if update_baselines:
        _store_baselines(path.stem, measured)
        return
    problems = compare_numbers(measured, _read_baselines()[path.stem])
    assert not problems, (f"{path.name} measured differently from {BASELINES.relative_to(REPO)} "
                          "(refresh on purpose with `make baselines`):\n  " + "\n  ".join(problems))


@pytest.mark.slow
def test_a_degraded_stage_fails_the_comparison(tmp_path):
    """The suite's teeth: notebook 09 run with the pipeline's de-lighting network (δ(T̂) at the cpu
    profile) spoiled on purpose (its parameter ``degrade_stage``: Gaussian noise of each tensor's
    spread, four times that in the output convolution, :func:`avatarme_edu.end_to_end.degraded_weights`)
    must record numbers
    that the comparison with the stored baselines refuses - the albedo it de-lights and every map
    inferred from that albedo."""
    path = REPO / "notebooks" / "09_evaluation.ipynb"
    measured, _ = run_notebook(path, tmp_path, degrade_stage="delight")
    problems = compare_numbers(measured, _read_baselines()[path.stem])
    worse = {line.split(" ")[0] for line in problems}
    assert {"e2e/end_to_end/diffuse_albedo_psnr", "e2e/true_sharp/diffuse_albedo_psnr",
            "nets/delighting/no_shape_psnr"} <= worse, problems  # the cpu pipeline's de-lighter is δ(T̂)
    # the stages before de-lighting, and the networks fed the true albedo, are untouched
    assert not worse & {"e2e/texture/fitted_psnr", "e2e/shape_error_mm", "nets/super_resolution/network_psnr",
                        "nets/delighting/network_psnr",
                        "e2e/true_albedo/specular_albedo_psnr", "real/landmark_error_px"}, problems


def test_the_suite_timing_covers_every_notebook():
    """``benchmarks/results/notebooks_cpu.json`` (``benchmarks/bench_notebooks.py``) times every notebook there
    is, and the classroom suite stays under its 10-minute budget; re-run it when a notebook is added."""
    timing = json.loads((REPO / "benchmarks" / "results" / "notebooks_cpu.json").read_text())
    timed = {row["notebook"] for row in timing["rows"]}
    assert timed == {p.stem for p in NOTEBOOKS}, sorted(timed ^ {p.stem for p in NOTEBOOKS})
    assert abs(timing["total_s"] - sum(row["wall_s"] for row in timing["rows"])) < 1.0
    assert timing["total_s"] < 600
