import math

import pytest
import torch

from avatarme_edu.lightstage import relief as R


def test_height_to_normals_signs_follow_the_tangent_frame():
    H, W = 8, 10
    rows, cols = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                                indexing="ij")
    # height rising along +u (columns) by 0.5 mm per 1 mm: the normal leans to -x
    n = R.height_to_normals(0.5 * cols * 1.0, (1.0, 1.0))
    assert torch.allclose(n[:, 4, 5], torch.tensor([-0.5, 0.0, 1.0]) / math.sqrt(1.25), atol=1e-6)
    # height rising *down* the rows: the surface faces up the map, +y (B points up the map)
    n = R.height_to_normals(0.25 * rows * 2.0, (2.0, 1.0))
    assert torch.allclose(n[:, 4, 5], torch.tensor([0.0, 0.25, 1.0]) / math.sqrt(1.0625), atol=1e-6)


def test_perturb_normals_reorients_detail_onto_the_base():
    g = torch.Generator().manual_seed(0)

    def random_normals(spread, lift):
        n = torch.randn(3, 6, 7, generator=g) * torch.tensor([spread, spread, 1.0]).view(3, 1, 1)
        return torch.nn.functional.normalize(n + torch.tensor([0.0, 0.0, lift]).view(3, 1, 1), dim=0)

    base, detail = random_normals(0.4, 1.0), random_normals(0.3, 1.5)
    flat = torch.zeros(3, 6, 7)
    flat[2] = 1
    assert torch.allclose(R.perturb_normals(base, flat), base, atol=1e-6)
    assert torch.allclose(R.perturb_normals(flat, detail), detail, atol=1e-6)
    out = R.perturb_normals(base, detail)
    assert torch.allclose(out.norm(dim=0), torch.ones(6, 7), atol=1e-6)
    # a rotation: the angle between result and base equals the detail's angle from +z
    assert torch.allclose((out * base).sum(0), detail[2], atol=1e-5)
    batched = R.perturb_normals(base[None].repeat(2, 1, 1, 1), detail[None].repeat(2, 1, 1, 1))
    assert torch.allclose(batched[1], out, atol=1e-6)
    with pytest.raises(ValueError, match="base and detail"):
        R.perturb_normals(base, detail[:, :3])
