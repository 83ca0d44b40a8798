"""The head in a notebook: an interactive pythreejs (three.js) scene with a few controls.

:func:`avatar_scene` returns an ipywidgets ``VBox``::

    [ three.js view of the textured head  (drag: orbit, wheel: zoom, right-drag: pan) ]
    [ show: [shaded | diffuse albedo | specular albedo | specular normals | diffuse normals] ]
    [ light azimuth  ---o---      light elevation  ---o---      [x] diffuse  [x] specular ]

How the maps reach three.js (pythreejs ships three.js r97):

* ``map`` = diffuse albedo, sent as 8-bit sRGB and marked ``sRGBEncoding``, so three.js decodes it
  to linear before lighting; the renderer's ``gammaOutput`` encodes the result for the screen.
* ``normalMap`` = specular normals in the mesh's own tangent frame (see :mod:`.export`). three.js
  r97 builds that frame per pixel from screen-space derivatives of position and UV: x along +u,
  y along +t, where three.js's t runs *up* the image. So we give three.js ``t = 1 - v`` and upload
  the texture rows bottom-up, and the normal map's green channel ("up the image") means the same
  thing to three.js as to us. A Phong material has one normal map: the specular normals (the fine
  detail) shade both terms here; :mod:`.html_viewer` shades diffuse with the diffuse normals.
* ``specularMap`` = specular albedo A_S: three.js scales the Phong specular colour by it. The
  specular colour is F0 = 0.056 (so F0(texel) = 0.056 A_S, as in the glb export).
* The other menu entries swap in an unlit ``MeshBasicMaterial`` showing one map as a picture.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from avatarme_edu.geometry.mesh import Mesh, vertex_normals
from avatarme_edu.reflectance import ReflectanceMaps
from avatarme_edu.render.export import check_mesh_and_maps, viewer_textures

MAP_CHOICES = ("shaded", "diffuse albedo", "specular albedo", "specular normals", "diffuse normals")
SPECULAR_F0 = "#0e0e0e"  # 14/255 = 0.055: skin's F0 0.028 x 2, scaled per texel by A_S
SHININESS = 40.0  # Blinn-Phong exponent, as in the HTML viewer
AMBIENT = 0.08  # a little light from everywhere, so the dark side is not black


def light_direction(azimuth_deg: float, elevation_deg: float) -> tuple[float, float, float]:
    """Unit vector towards a light: azimuth 0 is in front of the face (+Z), +90 on its left (+X)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return (math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az))


def head_geometry(mesh: Mesh):
    """A three.js ``BufferGeometry`` with position, normal and uv attributes and a triangle index."""
    import pythreejs as three

    m = mesh.to("cpu")
    uv = m.uvs.detach().float().numpy().copy()
    uv[:, 1] = 1.0 - uv[:, 1]  # three.js's t runs up the image; our v runs down
    attributes = {
        "position": three.BufferAttribute(m.vertices.detach().float().numpy(), normalized=False),
        "normal": three.BufferAttribute(vertex_normals(m.vertices, m.faces).detach().float().numpy(),
                                        normalized=False),
        "uv": three.BufferAttribute(uv, normalized=False),
    }
    index = three.BufferAttribute(m.faces.numpy().astype(np.uint32).reshape(-1), normalized=False)
    return three.BufferGeometry(attributes=attributes, index=index)


def data_texture(image: np.ndarray, srgb: bool = False):
    """``(H, W, 1|3)`` uint8 (rows top-down, as stored) -> a three.js ``DataTexture``.

    Rows are uploaded bottom-up (``t = 0`` is the bottom row for three.js). ``srgb`` marks colour
    data that three.js should decode to linear when it uses the texture as a colour ``map``.
    """
    import pythreejs as three

    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return three.DataTexture(
        data=np.ascontiguousarray(image[::-1]), format="RGBFormat", type="UnsignedByteType",
        minFilter="LinearFilter", magFilter="LinearFilter", unpackAlignment=1,
        encoding="sRGBEncoding" if srgb else "LinearEncoding",
    )


def avatar_materials(textures: dict) -> dict:
    """One material per entry of :data:`MAP_CHOICES`, from :func:`data_texture` textures."""
    import pythreejs as three

    shaded = three.MeshPhongMaterial(
        color="#ffffff", map=textures["diffuse"], normalMap=textures["normal"],
        specularMap=textures["specular"], specular=SPECULAR_F0, shininess=SHININESS)
    # Showing a map as a picture: it must reach the screen unchanged. The renderer gamma-encodes its
    # output, so the picture textures are marked sRGB: decode + encode cancel out.
    basic = {name: three.MeshBasicMaterial(map=textures[key]) for name, key in (
        ("diffuse albedo", "diffuse"), ("specular albedo", "specular"),
        ("specular normals", "specular_normals_object"), ("diffuse normals", "diffuse_normals_object"))}
    return {"shaded": shaded, **basic}


def avatar_scene(mesh: Mesh, maps: ReflectanceMaps, shape=None, size: tuple[int, int] = (640, 480),
                 max_width: int = 1024):
    """An interactive three.js view of the head with its maps, plus controls; returns a ``VBox``.

    ``shape``: the ShapeMaps the specular normals' tangent frame came from (baked if omitted);
    ``size``: the view's ``(width, height)`` in pixels; ``max_width``: texture width cap (the
    textures travel to the browser over the notebook's websocket).
    The returned box's children: ``[renderer, HBox([map menu]), HBox([sliders, checkboxes])]``.
    """
    import ipywidgets as widgets
    import pythreejs as three

    check_mesh_and_maps(mesh, maps)
    width, height = (int(s) for s in size)
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise ValueError(f"size must be (width, height) with each in [16, 4096] pixels, got {size}")

    tex = viewer_textures(mesh, maps, shape, max_width=max_width)
    textures = {
        "diffuse": data_texture(tex["diffuse"], srgb=True),
        "specular": data_texture(tex["specular"], srgb=True),  # specularMap reads .r raw; map decodes
        "normal": data_texture(tex["normal"]),
        "specular_normals_object": data_texture(tex["specular_normals_object"], srgb=True),
        "diffuse_normals_object": data_texture(tex["diffuse_normals_object"], srgb=True),
    }
    materials = avatar_materials(textures)
    head = three.Mesh(geometry=head_geometry(mesh), material=materials["shaded"])

    # Frame the head: look at the centre of its bounding box from the front (+Z).
    v = mesh.vertices.detach().cpu()
    center = ((v.min(0).values + v.max(0).values) / 2).tolist()
    radius = float((v - torch.tensor(center)).norm(dim=1).max())
    fov = 30.0
    distance = 1.15 * radius / math.sin(math.radians(fov) / 2)
    camera = three.PerspectiveCamera(fov=fov, aspect=width / height, near=distance / 20, far=distance * 20,
                                     position=[center[0], center[1], center[2] + distance])
    # Directional lights shine from their position towards the origin; the head stays put, so the
    # light is fixed to the head while the camera orbits.
    light = three.DirectionalLight(color="#ffffff", intensity=1.0,
                                   position=[10 * radius * c for c in light_direction(35, 25)])
    scene = three.Scene(children=[head, camera, light, three.AmbientLight(color="#ffffff", intensity=AMBIENT)],
                        background="#212124")
    controls = three.OrbitControls(controlling=camera, target=center)
    renderer = three.Renderer(scene=scene, camera=camera, controls=[controls], width=width, height=height,
                              antialias=True)
    renderer.gammaOutput = True  # linear shading results -> display (gamma 2.2)
    renderer.gammaFactor = 2.2

    # ---- controls ----
    show = widgets.Dropdown(options=list(MAP_CHOICES), value="shaded", description="show")
    azimuth = widgets.FloatSlider(value=35, min=-180, max=180, step=1, description="light azimuth")
    elevation = widgets.FloatSlider(value=25, min=-85, max=85, step=1, description="light elevation")
    diffuse = widgets.Checkbox(value=True, description="diffuse")
    specular = widgets.Checkbox(value=True, description="specular")

    def on_show(change):
        head.material = materials[change["new"]]

    def on_light(_change):
        light.position = [10 * radius * c for c in light_direction(azimuth.value, elevation.value)]

    def on_terms(_change):
        # Switching a term off = making its colour black (the maps stay, scaled by zero).
        materials["shaded"].color = "#ffffff" if diffuse.value else "#000000"
        materials["shaded"].specular = SPECULAR_F0 if specular.value else "#000000"

    show.observe(on_show, names="value")
    azimuth.observe(on_light, names="value")
    elevation.observe(on_light, names="value")
    diffuse.observe(on_terms, names="value")
    specular.observe(on_terms, names="value")
    return widgets.VBox([renderer, widgets.HBox([show]),
                         widgets.HBox([azimuth, elevation, diffuse, specular])])
