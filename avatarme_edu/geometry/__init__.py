"""Geometry: triangle meshes, the EduHead model, rasterisation and UV baking."""

from avatarme_edu.geometry.mesh import Mesh, read_obj, write_obj

__all__ = ["Mesh", "read_obj", "write_obj"]
