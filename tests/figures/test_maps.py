import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from avatarme_edu.figures.maps import (checkerboard, draw_window_grid, guess_kind, psnr_bar_chart, show_images,
                                       show_maps, to_display)
from avatarme_edu.tiling import sample_patches, window_grid


def _maps(h=24, w=36):
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[4:20, 6:30] = True
    normals = torch.nn.functional.normalize(torch.randn(3, h, w, generator=g) * 0.2
                                            + torch.tensor([0, 0, 1.0]).view(3, 1, 1), dim=0)
    return {"diffuse_albedo": torch.rand(3, h, w, generator=g), "specular_albedo": torch.rand(1, h, w, generator=g),
            "specular_normals": normals}, mask


def test_to_display_conventions():
    up = torch.zeros(3, 2, 3)
    up[2] = 1.0  # +Z tangent-space normal -> the usual lilac (0.5, 0.5, 1)
    assert np.allclose(to_display(up, "normal"), [0.5, 0.5, 1.0])
    lin = torch.full((3, 2, 3), 0.2140)  # linear 0.214 is sRGB ~0.5
    assert np.allclose(to_display(lin, "color"), 0.5, atol=2e-3)
    gray = torch.full((1, 2, 3), 0.25)
    out = to_display(gray, "gray")
    assert out.shape == (2, 3, 3) and np.allclose(out, 0.25)
    assert to_display(torch.tensor([[True, False]]), "mask").tolist() == [[[1.0] * 3, [0.0] * 3]]
    heat = to_display(torch.tensor([[0.0, 5.0, 10.0]]), "heat", vmax=10.0)
    assert heat.shape == (1, 3, 3) and heat[0, 0].sum() < heat[0, 2].sum()  # magma: dark -> bright


def test_masked_texels_show_the_checkerboard():
    maps, mask = _maps()
    img = to_display(maps["diffuse_albedo"], "color", mask)
    board = checkerboard(mask.shape)
    assert np.array_equal(img[~mask.numpy()], board[~mask.numpy()])
    assert not np.allclose(img[mask.numpy()], board[mask.numpy()])
    assert img.min() >= 0 and img.max() <= 1


def test_to_display_errors():
    with pytest.raises(ValueError, match="valid kinds"):
        to_display(torch.zeros(3, 2, 2), "albedo")
    with pytest.raises(ValueError, match="3 channels"):
        to_display(torch.zeros(1, 2, 2), "normal")
    with pytest.raises(ValueError, match="mask must be"):
        to_display(torch.zeros(3, 2, 2), "color", torch.ones(3, 3, dtype=torch.bool))


def test_guess_kind():
    maps, mask = _maps()
    assert [guess_kind(k, v) for k, v in maps.items()] == ["color", "gray", "normal"]
    assert guess_kind("mask", mask) == "mask" and guess_kind("normal angular error", mask[None].float()) == "heat"


def test_show_maps_makes_a_labelled_grid(tmp_path):
    maps, mask = _maps()
    fig = show_maps(maps, mask=mask, ncols=2, title="maps")
    assert isinstance(fig, Figure)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split("\n")[0] for ax in titled] == list(maps)
    assert "normal" in titled[2].get_title()
    # each panel shows its own map, by the display conventions written out here (inside the mask)
    m = mask.numpy()
    lin = maps["diffuse_albedo"].permute(1, 2, 0).numpy()
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.power(lin, 1 / 2.4) - 0.055)
    grey = np.repeat(maps["specular_albedo"].permute(1, 2, 0).numpy(), 3, axis=2)
    lilac = maps["specular_normals"].permute(1, 2, 0).numpy() * 0.5 + 0.5
    for ax, want in zip(titled, (srgb, grey, lilac)):
        shown = np.asarray(ax.images[0].get_array())[..., :3]
        assert shown.shape == (24, 36, 3)
        np.testing.assert_allclose(shown[m], want[m], atol=1e-5)
    fig.savefig(tmp_path / "m.png", dpi=40)
    from PIL import Image

    png = np.asarray(Image.open(tmp_path / "m.png").convert("RGB"), dtype=np.float32) / 255
    assert png.shape[:2] == (round(fig.get_figheight() * 40), round(fig.get_figwidth() * 40))
    assert float(png.std()) > 0.05  # pictures were drawn, not an empty canvas
    with pytest.raises(ValueError, match="empty"):
        show_maps({})


def test_draw_window_grid_draws_every_window_and_patch(tmp_path):
    maps, mask = _maps(48, 72)
    windows = window_grid((48, 72), 32, 20)
    _, corners = sample_patches(maps, mask, 8, 5, torch.Generator().manual_seed(0))
    ax = draw_window_grid(maps["diffuse_albedo"], windows, 32, patches=corners, patch_size=8)
    assert len(ax.patches) == len(windows) + 5
    assert [t.get_text() for t in ax.texts] == [str(k) for k in range(len(windows))]
    assert f"{len(windows)} windows" in ax.get_title()
    ax.figure.savefig(tmp_path / "g.png", dpi=40)
    with pytest.raises(ValueError, match="patch_size"):
        draw_window_grid(maps["diffuse_albedo"], windows, 32, patches=corners)
    # a map smaller than the window: the view extends over the padded window
    ax = draw_window_grid(torch.rand(1, 10, 12), window_grid((10, 12), 16, 8), 16)
    assert ax.get_xlim()[1] == pytest.approx(15.5)


def test_psnr_bar_chart_groups_methods_per_map(tmp_path):
    table = {"ours": {"diffuse_albedo": 31.2, "specular_albedo": 34.5},
             "baseline": {"diffuse_albedo": 24.0, "specular_albedo": math.inf},
             "partial": {"specular_albedo": 12.0}}
    fig = psnr_bar_chart(table)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["diffuse_albedo", "specular_albedo"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(table)
    labels = sorted(t.get_text() for t in ax.texts)
    assert labels == sorted(["31.2", "34.5", "24.0", "inf", "12.0"])
    fig.savefig(tmp_path / "b.png", dpi=40)
    with pytest.raises(ValueError, match="empty"):
        psnr_bar_chart({})


def test_show_images_draws_each_image_with_its_title():
    a = torch.zeros(3, 8, 12)
    a[0] = 1.0  # red
    b = torch.full((3, 8, 12), 2.0)  # out of range: clipped to white
    fig = show_images([a, b], ["red", "white"], width=2.0)
    assert isinstance(fig, Figure) and [ax.get_title() for ax in fig.axes] == ["red", "white"]
    shown = [ax.images[0].get_array() for ax in fig.axes]
    assert np.allclose(shown[0][..., 0], 1.0) and np.allclose(shown[0][..., 1:], 0.0)
    assert np.allclose(shown[1], 1.0)
    with pytest.raises(ValueError, match="one title per image"):
        show_images([a], ["a", "b"])
