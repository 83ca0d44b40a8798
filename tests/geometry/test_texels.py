import pytest
import torch

from avatarme_edu.geometry.texels import largest_step_m, local_texel_size_mm, texel_size_mm, texel_steps_mm
from avatarme_edu.lightstage.skin import skin_texel_mm
from avatarme_edu.optics.subsurface import subsurface_blur


def plane(h=20, w=30, row_mm=0.8, col_mm=0.5):
    """A flat position map with non-square texels: rows ``row_mm`` apart, columns ``col_mm``."""
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
    position = torch.stack([cols * col_mm / 1000, -rows * row_mm / 1000, torch.zeros(h, w)])
    return position, torch.ones(h, w, dtype=torch.bool)


def test_one_order_everywhere_rows_then_columns_on_non_square_texels():
    position, mask = plane()
    assert texel_size_mm(position, mask) == pytest.approx((0.8, 0.5), rel=1e-4)
    local = local_texel_size_mm(position, mask)
    assert torch.allclose(local[0], torch.full_like(local[0], 0.8), rtol=1e-4)
    assert torch.allclose(local[1], torch.full_like(local[1], 0.5), rtol=1e-4)
    # the skin painter measures the same order (over its face region when there is one)
    assert skin_texel_mm(mask, position) == pytest.approx((0.8, 0.5), rel=1e-4)
    face = torch.zeros_like(mask, dtype=torch.float32)
    face[:, 10:20] = 1.0
    assert skin_texel_mm(mask, position, {"face": face}) == pytest.approx((0.8, 0.5), rel=1e-4)


def test_subsurface_blur_reads_the_same_order():
    # Wider texels along the rows: the same mm blur spreads over fewer rows than columns.
    position, mask = plane(41, 41, row_mm=1.0, col_mm=0.25)
    spot = torch.zeros(3, 41, 41)
    spot[:, 20, 20] = 1.0
    out = subsurface_blur(spot, mask, texel_size_mm(position, mask))[0]
    r = torch.arange(41, dtype=torch.float32) - 20
    var_rows = float((out.sum(1) * r**2).sum() / out.sum())
    var_cols = float((out.sum(0) * r**2).sum() / out.sum())
    assert var_cols == pytest.approx(16 * var_rows, rel=0.1)  # (1.0 / 0.25)^2 more texels^2 along the columns
    stretched = subsurface_blur(spot, mask, (0.25, 0.25), texel_map_mm=local_texel_size_mm(position, mask))[0]
    assert torch.allclose(stretched, out, atol=1e-5)  # the stretch map says the same as the typical size


def test_steps_mark_missing_neighbours_and_the_largest_step():
    position, mask = plane(4, 5)
    mask[1, 2] = False
    steps = texel_steps_mm(position, mask)
    assert steps.shape == (2, 2, 4, 5)
    assert torch.isinf(steps[0, 0, 0]).all() and torch.isinf(steps[1, 1, :, -1]).all()  # beyond the map
    assert torch.isinf(steps[0, 1, 0, 2]) and torch.isinf(steps[1, 1, 1, 1])  # next to the hole
    assert float(steps[0, 1, 2, 2]) == pytest.approx(0.8, rel=1e-4)
    big = largest_step_m(position, mask)
    assert float(big[0, 0]) == pytest.approx(0.0008, rel=1e-4) and float(big[1, 2]) == 0.0


def test_bad_input_raises_one_clear_line():
    position, mask = plane(3, 3)
    with pytest.raises(ValueError, match=r"position must be \(3, H, W\)"):
        texel_size_mm(position[:2], mask)
    lonely = torch.zeros(3, 3, dtype=torch.bool)
    lonely[1, 1] = True
    with pytest.raises(ValueError, match="no two neighbouring texels"):
        texel_size_mm(position, lonely)
