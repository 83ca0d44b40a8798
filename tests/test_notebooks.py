"""Notebook regression: every notebook runs top to bottom with papermill on the cpu profile.

The executed copies land in pytest's tmp dir (the committed notebooks stay light). Each notebook's
``parameters`` cell is overridden with the small values a CI machine can afford.
"""

from pathlib import Path

import nbformat
import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _parameters_cell(nb):
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return tagged[0] if tagged else None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_a_tagged_parameters_cell_and_no_heavy_outputs(path):
    nb = nbformat.read(path, as_version=4)
    cell = _parameters_cell(nb)
    assert cell is not None, f"{path.name} needs a cell tagged 'parameters' for papermill"
    assert "profile" in cell.source
    assert path.stat().st_size < 1_500_000, "commit notebooks without heavy outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_papermill(path, tmp_path):
    out = tmp_path / path.name
    papermill.execute_notebook(
        str(path), str(out), parameters={"profile": "cpu", "quick": True},
        cwd=str(path.parent), kernel_name="python3", progress_bar=False,
    )
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} should show pictures"
