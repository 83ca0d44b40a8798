import pytest
import torch


def fake_batch(n=2, p=16, r=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    unit = lambda: torch.nn.functional.normalize(torch.randn(n, 3, p, p, generator=g), dim=1)  # noqa: E731
    return {"texture": torch.rand(n, 3, p, p, generator=g), "texture_low": torch.rand(n, 3, p // r, p // r, generator=g),
            "diffuse_albedo": torch.rand(n, 3, p, p, generator=g), "specular_albedo": torch.rand(n, 1, p, p, generator=g),
            "diffuse_normals": unit(), "specular_normals": unit(), "normals_object": unit(), "normals_tangent": unit(),
            "depth": torch.rand(n, 1, p, p, generator=g), "mask": torch.rand(n, p, p, generator=g) > 0.2,
            "subject_id": torch.zeros(n, dtype=torch.int64)}


@pytest.fixture
def make_batch():
    """``make_batch(n, p, r, seed)``: a batch of random maps under the light-stage dataset's names."""
    return fake_batch
