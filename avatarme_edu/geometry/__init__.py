"""Geometry: triangle meshes, the EduHead model, rasterisation, UV baking and texel sizes."""

from avatarme_edu.geometry.camera import Camera
from avatarme_edu.geometry.head import EXPRESSIONS, EduHead, load_eduhead
from avatarme_edu.geometry.mesh import Mesh, read_obj, write_obj
from avatarme_edu.geometry.raster import rasterize_image, rasterize_uv
from avatarme_edu.geometry.regions import REGION_NAMES
from avatarme_edu.geometry.sphere_points import fibonacci_directions
from avatarme_edu.geometry.texels import local_texel_size_mm, texel_size_mm
from avatarme_edu.geometry.uv_bake import ShapeMaps, bake_shape_maps, object_to_tangent, tangent_to_object

__all__ = [
    "Camera", "EXPRESSIONS", "EduHead", "load_eduhead", "Mesh", "read_obj", "write_obj", "rasterize_image",
    "rasterize_uv", "REGION_NAMES", "fibonacci_directions", "local_texel_size_mm", "texel_size_mm", "ShapeMaps",
    "bake_shape_maps", "object_to_tangent", "tangent_to_object",
]
