import pytest
import torch

from avatarme_edu.nets.checkpoint import checkpoint_info, load_checkpoint, save_checkpoint


def _model_and_adam(seed):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.ReLU(), torch.nn.Conv2d(3, 1, 1))
    return m, torch.optim.Adam(m.parameters(), lr=1e-2, betas=(0.5, 0.999))


def _steps(m, opt, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        loss = m(torch.randn(2, 2, 6, 6, generator=g)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_round_trip_restores_weights_adam_state_and_random_state(tmp_path):
    m, opt = _model_and_adam(0)
    _steps(m, opt, 3)
    torch.manual_seed(123)
    path = save_checkpoint(tmp_path / "c.safetensors", {"G": m}, {"G": opt}, 3, {"note": "x"})
    expected_draw = torch.rand(4)
    m2, opt2 = _model_and_adam(1)  # other weights, fresh optimiser
    torch.manual_seed(999)
    assert load_checkpoint(path, {"G": m2}, {"G": opt2}) == (3, {"note": "x"})
    assert torch.equal(torch.rand(4), expected_draw)  # the random state came back too
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    # the moments came back: the next steps agree bit for bit
    _steps(m, opt, 2, seed=7)
    _steps(m2, opt2, 2, seed=7)
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert checkpoint_info(path)[0] == 3


def test_foreign_files_and_other_networks_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="not an avatarme-edu training checkpoint"):
        checkpoint_info(tmp_path / "w.safetensors")
    m, opt = _model_and_adam(0)
    path = save_checkpoint(tmp_path / "c.safetensors", {"G": m}, {"G": opt}, 0)
    other = torch.nn.Conv2d(2, 5, 3)
    with pytest.raises(ValueError, match="does not fit network 'G'"):
        load_checkpoint(path, {"G": other}, {})
