import pytest
import torch

from avatarme_edu.nets.tasks import example_batch
from avatarme_edu.profiles import get_profile


def fake_batch(n=2, p=16, r=4, seed=0):
    """Random maps under the dataset's names, with a random mask (about 80% valid)."""
    g = torch.Generator().manual_seed(seed)
    batch = example_batch(n, p, r, g)
    batch["mask"] = torch.rand(n, p, p, generator=g) > 0.2
    return batch


@pytest.fixture
def make_batch():
    """``make_batch(n, p, r, seed)``: a batch of random maps under the light-stage dataset's names."""
    return fake_batch


# tiny networks: the loop is what is tested here, not the architecture
TINY = dict(patch_size=16, rcan_groups=1, rcan_blocks=1, rcan_channels=8, rcan_reduction=4,
            gen_ngf=4, gen_downsample=2, gen_blocks=1)


def tiny_profile():
    return get_profile("cpu", device="cpu").replace(**TINY)


def batches(seed=0, n=2, p=16):
    """A factory of an endless, repeatable sequence of fake batches (what train() takes)."""
    def make():
        i = 0
        while True:
            yield fake_batch(n=n, p=p, seed=seed * 1000 + i)
            i += 1
    return make


@pytest.fixture
def tiny():
    """The cpu profile with tiny networks and 16-texel patches."""
    return tiny_profile()


@pytest.fixture
def batch_source():
    """``batch_source(seed, n, p)``: a factory of a repeatable, endless batch sequence (what train() takes)."""
    return batches
