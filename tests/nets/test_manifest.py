import json

from avatarme_edu.nets.manifest import main, reproduce_command, run_record, update_manifest
from avatarme_edu.nets.tasks import get_task
from avatarme_edu.nets.train import train


def test_reproduce_command_fixes_the_steps_and_drops_the_time_budget():
    cmd = "avatarme-edu train delight --steps 2000 --max-minutes 8 --out runs/d --resume --seed 0"
    assert reproduce_command(cmd, 271) == "avatarme-edu train delight --out runs/d --seed 0 --steps 271"


def test_a_run_is_recorded_with_its_curve_and_other_keys_are_kept(tmp_path, tiny, batch_source):
    run = tmp_path / "run"
    val = iter(range(100))
    train(get_task("sr"), tiny, batch_source(), run, 4, validate=lambda G, step: {"psnr": 20.0 + next(val)},
          val_every=2, progress=False, info={"command": "avatarme-edu train sr --steps 9 --max-minutes 1",
                                             "batch_size": 2})
    rec = run_record(run)
    assert rec["steps"] == 4 and rec["task"] == "sr" and rec["reproduce"] == "avatarme-edu train sr --steps 4"
    assert rec["precision"] == "fp32"
    assert [c["step"] for c in rec["curve"]] == [2, 4]
    assert [c["val"]["psnr"] for c in rec["curve"]] == [20.0, 21.0]
    # training time at each validation, rounded to 0.1 s: it grows and ends at the run's time
    assert 0 <= rec["curve"][0]["wall_s"] <= rec["curve"][1]["wall_s"] <= rec["wall_s"] + 0.1
    weights = tmp_path / "w"
    update_manifest(weights / "MANIFEST.json", {"texture_gan": {"steps": 7}})
    assert main([str(run), "--weights-dir", str(weights)]) == 0
    m = json.loads((weights / "MANIFEST.json").read_text())
    assert m["texture_gan"] == {"steps": 7} and m["sr"]["steps"] == 4
    assert (weights / "sr.safetensors").read_bytes() == (run / "sr.safetensors").read_bytes()
    assert not (weights / "training_means.safetensors").exists() and "training_means" not in m["sr"]
    (run / "training_means.safetensors").write_bytes(b"the prior")  # a run trained with a UV prior
    assert main([str(run), "--weights-dir", str(weights)]) == 0
    assert (weights / "training_means.safetensors").read_bytes() == b"the prior"
    assert json.loads((weights / "MANIFEST.json").read_text())["sr"]["training_means"] == "training_means.safetensors"
    assert main([str(tmp_path / "nothing")]) == 2


def test_curves_table_lists_each_validation():
    from avatarme_edu.nets.manifest import curves_table

    m = {"sr": {"curve": [{"step": 50, "wall_s": 90.0, "val": {"psnr": 30.0, "ssim": 0.9}}]},
         "diffuse_normals": {"curve": [{"step": 25, "wall_s": 30.0,
                                        "val": {"angular_error_deg": {"mean": 0.2, "median": 0.1}}}]},
         "texture_gan": {"steps": 3}}
    rows = curves_table(m).splitlines()
    assert rows[2] == "| sr | 50 | 1.5 | 30.00 dB |" and rows[3] == "| diffuse_normals | 25 | 0.5 | 0.200 deg |"
    assert len(rows) == 4


def test_whole_map_results_are_added_to_each_network(tmp_path):
    from avatarme_edu.nets.manifest import add_results

    m = tmp_path / "MANIFEST.json"
    update_manifest(m, {"delight": {"steps": 3}, "texture_gan": {"steps": 1}, "specular_albedo": {"steps": 2}})
    r = tmp_path / "r.json"
    r.write_text(json.dumps({"delighting": {"network": {"psnr": 21.0, "ssim": 0.8}, "texture": {"psnr": 15.0}},
                             "specular_albedo": {"network": {"psnr": 28.0}, "no_level_head": {"psnr": 27.0}}}))
    add_results(m, r, [4, 9])
    got = json.loads(m.read_text())
    assert got["delight"]["held_out_maps"] == {"seeds": [4, 9], "results": str(r), "psnr": 21.0, "ssim": 0.8}
    assert got["specular_albedo"]["held_out_maps"]["psnr"] == 27.0  # ψ's own numbers, without its level head
    assert got["delight"]["steps"] == 3 and got["texture_gan"] == {"steps": 1}
