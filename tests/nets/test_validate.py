import pytest

from avatarme_edu.nets.tasks import get_task
from avatarme_edu.nets.train import train
from avatarme_edu.nets.validate import score, validator


def test_validation_numbers_and_figure(tmp_path, tiny, make_batch, batch_source):
    task, p, batches = get_task("specular_normals"), tiny, batch_source
    b = make_batch(n=2, p=16, seed=9)
    log = train(task, p, batches(), tmp_path, 2, validate=validator(task, b, tmp_path), val_every=1, progress=False)
    vals = [e for e in log["entries"] if "val" in e]
    assert [e["step"] for e in vals] == [1, 2]
    err = vals[-1]["val"]["angular_error_deg"]
    assert 0 < err["median"] < 180 and 0 < err["mean"] < 180
    assert (tmp_path / "val_000002.png").stat().st_size > 1000
    # the score itself: a perfect colour prediction scores inf dB, SSIM 1
    t = get_task("delight")
    s = score(t, b["diffuse_albedo"], b["diffuse_albedo"], b["mask"])
    assert s["psnr"] == float("inf") and s["ssim"] == pytest.approx(1.0)
