import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from avatarme_edu.geometry.mesh import uv_sphere  # noqa: E402
from avatarme_edu.figures.meshes import plot_head, plot_uv_layout  # noqa: E402


def test_plot_head_draws_front_facing_triangles_lit_from_the_front():
    mesh = uv_sphere(12, 16)
    ax = plot_head(mesh, view="front")
    coll = ax.collections[0]
    n = len(coll.get_facecolors())
    assert 0 < n < mesh.n_faces  # back faces culled
    assert float(coll.get_facecolors()[:, :3].max()) > 0.5
    plt.close("all")


def test_plot_head_views_and_colors():
    mesh = uv_sphere(8, 12)
    fig = plt.figure()
    ax = fig.add_subplot(projection="3d")
    plot_head(mesh, ax, view=35.0, colors=torch.zeros(mesh.n_vertices, 3))
    assert float(ax.collections[0].get_facecolors()[:, :3].max()) == 0.0  # black stays black
    with pytest.raises(ValueError, match="unknown view 'top'"):
        plot_head(mesh, ax, view="top")
    plt.close("all")


def test_plot_uv_layout_in_texels():
    mesh = uv_sphere(6, 9)
    ax = plot_uv_layout(mesh.faces, mesh.uvs, weights=torch.ones(mesh.n_vertices))
    assert ax.get_xlim() == (0, 576) and ax.get_ylim() == (384, 0)
    plt.close("all")
