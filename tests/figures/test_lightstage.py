import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402
from PIL import Image  # noqa: E402

from avatarme_edu.figures.lightstage import (flat_preview, gradient_image_panels, plot_light_stage,  # noqa: E402
                                             separation_panels)
from avatarme_edu.geometry.mesh import uv_sphere  # noqa: E402
from avatarme_edu.geometry.uv_bake import bake_shape_maps  # noqa: E402
from avatarme_edu.lightstage.capture import PATTERN_NAMES, GradientImages, capture_subject  # noqa: E402
from avatarme_edu.lightstage.separation import separate  # noqa: E402
from avatarme_edu.lightstage.skin import skin_reflectance, toy_face_regions  # noqa: E402
from avatarme_edu.lightstage.skin_params import SkinParams  # noqa: E402
from avatarme_edu.lightstage.sphere import make_light_stage  # noqa: E402
from avatarme_edu.reflectance import ReflectanceMaps  # noqa: E402


def _sphere_subject(hw=(16, 24)):
    """A head-sized sphere with plain skin-like maps: (ShapeMaps, ReflectanceMaps)."""
    shape = bake_shape_maps(uv_sphere(16, 24, 0.1), hw)
    flat = torch.zeros(3, *hw)
    flat[2] = 1.0
    maps = ReflectanceMaps(torch.full((3, *hw), 0.5), torch.full((1, *hw), 0.4), shape.normals_object.clone(), flat,
                           shape.mask.clone())
    return shape, maps


def test_plot_draws_banks_patterns_and_intensities(tmp_path):
    stage = make_light_stage(n_lights=40, n_cameras=3)
    ramp = torch.linspace(0, 1, 40)
    # the x pattern written out here from the light directions: intensity (1 + w_x) / 2
    expected = {"x": (1 + stage.light_directions[:, 0]) / 2, "ramp": ramp}
    fig = plt.figure(figsize=(9, 3))
    for i, (name, colour) in enumerate((("bank", "bank"), ("x", "x"), ("ramp", ramp))):
        ax = plot_light_stage(stage, ax=fig.add_subplot(1, 3, i + 1, projection="3d"), color_by=colour)
        points = [c for c in ax.collections if isinstance(c, PathCollection)]
        cameras = [c for c in points if c.get_label() == "camera"]
        lights = [c for c in points if c.get_label() != "camera"]
        assert len(cameras) == 1 and len(cameras[0].get_offsets()) == 3
        assert sum(isinstance(c, Poly3DCollection) for c in ax.collections) == 1  # the head
        drawn = sum(len(c.get_offsets()) for c in lights)
        if name == "bank":  # both LEDs of every light
            assert drawn == 2 * stage.n_lights
            assert {c.get_label() for c in lights} >= {"cross-polarised LED", "parallel-polarised LED"}
        else:  # one grey point per light, its grey level the light's intensity
            assert drawn == stage.n_lights
            grey = np.sort(np.concatenate([c.get_array() for c in lights]))
            np.testing.assert_allclose(grey, np.sort(expected[name].numpy()), atol=1e-6)
    fig.savefig(tmp_path / "stage.png", dpi=50)
    plt.close(fig)
    image = np.asarray(Image.open(tmp_path / "stage.png").convert("L"), dtype=np.float32) / 255
    assert image.shape == (150, 450)
    for panel in np.split(image, 3, axis=1):  # every panel has drawn something, not a blank canvas
        assert float(panel.std()) > 0.05 and float((panel < 0.5).mean()) > 0.01
    with pytest.raises(ValueError, match="color_by"):
        plot_light_stage(stage, color_by="w")
    with pytest.raises(ValueError, match="intensities"):
        plot_light_stage(stage, color_by=torch.ones(7))
    plt.close("all")


def test_display_panels_are_images_in_range_and_black_outside_the_mask():
    stage = make_light_stage()
    images = capture_subject(*_sphere_subject(), stage)
    assert isinstance(images, GradientImages)
    assert torch.equal(images.image("y", "cross"), images.cross[1])
    assert torch.equal(images.image("o", "specular"), images.parallel[3] - images.cross[3])
    panels = gradient_image_panels(images)
    assert list(panels) == [f"{kind}_{p}" for kind in ("cross", "parallel", "specular") for p in PATTERN_NAMES]
    steps = separation_panels(images, separate(images, stage))
    assert list(steps) == ["diffuse_ratio", "diffuse_normals", "diffuse_albedo", "specular_ratio",
                           "reflection_vectors", "view_directions", "specular_normals", "specular_albedo"]
    for img in list(panels.values()) + list(steps.values()):
        assert img.shape == (3, 16, 24)
        assert img.min() >= 0 and img.max() <= 1
        assert (img[:, ~images.mask] == 0).all()
    assert panels["parallel_o"][:, images.mask].max() > 0.9  # auto-exposed, not a dark picture
    with pytest.raises(ValueError, match="pattern"):
        images.image("w", "cross")


def test_flat_preview_lights_the_maps_like_a_sheet_facing_the_viewer():
    regions, mask = toy_face_regions((48, 72))
    maps = skin_reflectance(regions, mask, SkinParams(), 0)
    lit = flat_preview(maps, light=(0.0, 0.0, 1.0), ambient=0.0)
    assert lit.shape == (3, 48, 72) and float(lit.min()) >= 0 and float(lit.max()) <= 1
    # head-on light on a flat texel: Lambert gives the albedo, plus a specular share
    flat = (maps.diffuse_detail_normals[2] > 0.9999) & mask
    assert bool(flat.any())
    assert torch.all(lit[:, flat] >= maps.diffuse_albedo[:, flat] - 1e-5)
    dark = flat_preview(maps, light=(0.0, 0.0, -1.0), ambient=0.0)  # from behind the sheet: black
    assert float(dark.max()) == 0.0
