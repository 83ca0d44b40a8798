import json

import numpy as np
import pytest
from matplotlib.figure import Figure
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from avatarme_edu.figures.training import loss_curve, loss_terms, train_live
from avatarme_edu.profiles import get_profile


def _log():
    entries = [{"step": i + 1, "loss": 10.0 - i, "l1": 0.1, "gan": 0.5, "patches_per_s": 3.0} for i in range(12)]
    return {"task": "delight", "entries": entries + [{"step": 12, "val": {"psnr": 20.0}}]}


def test_loss_curve_draws_one_panel_per_term_with_its_moving_average():
    log = _log()
    assert loss_terms(log) == ["loss", "l1", "gan"]
    fig = loss_curve(log, smooth=4)
    assert isinstance(fig, Figure) and [ax.get_title() for ax in fig.axes] == ["loss", "l1", "gan"]
    raw, avg = fig.axes[0].lines
    assert np.allclose(raw.get_ydata(), np.arange(10.0, -2.0, -1.0))
    assert np.allclose(avg.get_ydata()[0], np.mean([10, 9, 8, 7])) and len(avg.get_xdata()) == 9


def test_loss_curve_draws_an_l1_only_log_once_and_refuses_an_empty_one():
    log = {"entries": [{"step": 1, "loss": 0.5, "l1": 0.5}, {"step": 2, "loss": 0.4, "l1": 0.4}]}
    assert [ax.get_title() for ax in loss_curve(log).axes] == ["loss"]
    with pytest.raises(ValueError, match="no training steps"):
        loss_curve({"entries": []})
    with pytest.raises(ValueError, match="records no"):
        loss_curve(log, keys=["gan"])


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """Identities 0-1 (both training) at 96x144 maps, neutral only, and tiny networks."""
    from avatarme_edu.lightstage.dataset import make_dataset

    p = get_profile("cpu", device="cpu").replace(
        map_hw=(96, 144), texture_hw=(24, 36), patch_size=16, gen_ngf=4, gen_downsample=2, gen_blocks=1)
    path = tmp_path_factory.mktemp("ls")
    make_dataset(2, 0, p, path, progress=False, workers=0)
    return p, path


def test_train_live_redraws_after_each_chunk_and_continues_a_folder(tmp_path, tiny_dataset):
    p, data = tiny_dataset
    seen = []
    log = train_live("specular_albedo", p, data, tmp_path / "run", 5, chunk=2, batch_size=2,
                     on_update=lambda fig, log: seen.append((fig, log["steps_done"])))
    assert [s for _, s in seen] == [2, 4, 5]
    assert all(isinstance(f, Figure) for f, _ in seen) and "step 5 of 5" in seen[-1][0].texts[0].get_text()
    assert [e["step"] for e in log["entries"]] == [1, 2, 3, 4, 5]
    assert json.loads((tmp_path / "run" / "log.json").read_text())["steps_done"] == 5
    with safe_open(str(tmp_path / "run" / "specular_albedo.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["info"])["steps"] == 5
    # chunks change nothing: the weights of one uninterrupted 5-step run
    train_live("specular_albedo", p, data, tmp_path / "once", 5, chunk=5, batch_size=2, show=False)
    a, b = (load_file(str(tmp_path / d / "specular_albedo.safetensors")) for d in ("run", "once"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the same folder again: 2 more steps continue the run, fewer steps than it holds are refused
    more = train_live("specular_albedo", p, data, tmp_path / "run", 7, chunk=5, batch_size=2, show=False)
    assert [e["step"] for e in more["entries"]] == list(range(1, 8))
    with pytest.raises(ValueError, match="already holds 7 steps"):
        train_live("specular_albedo", p, data, tmp_path / "run", 3, show=False)
