"""Geometry: triangle meshes, the EduHead model, rasterisation, UV baking and texel sizes."""

from avatarme_edu.public import public_face

# public name -> its module (loaded on first use, see avatarme_edu.public)
_HOMES = {
    "Camera": "camera", "EXPRESSIONS": "head", "EduHead": "head", "load_eduhead": "head", "Mesh": "mesh",
    "read_obj": "mesh", "write_obj": "mesh", "rasterize_image": "raster", "rasterize_uv": "raster",
    "REGION_NAMES": "regions", "fibonacci_directions": "sphere_points", "local_texel_size_mm": "texels",
    "texel_size_mm": "texels", "ShapeMaps": "uv_bake", "bake_shape_maps": "uv_bake",
    "object_to_tangent": "uv_bake", "tangent_to_object": "uv_bake",
}
__all__ = list(_HOMES)
__getattr__, __dir__ = public_face(__name__, _HOMES)
