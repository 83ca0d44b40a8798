"""Rendering AvatarMe's maps: lights, texture-space shading, camera views, exports and viewers."""

from avatarme_edu.render.export import export_glb, export_obj
from avatarme_edu.render.html_viewer import write_html_viewer
from avatarme_edu.render.lights import PRESETS, DirectionalLight, PointLight, SHEnvironment
from avatarme_edu.render.shading import render_view, shade_uv
from avatarme_edu.render.threejs import avatar_scene
from avatarme_edu.render.views import compare_renders, relight_strip, turntable, view_camera

__all__ = [
    "export_glb", "export_obj", "write_html_viewer", "PRESETS", "DirectionalLight", "PointLight", "SHEnvironment",
    "render_view", "shade_uv", "avatar_scene", "compare_renders", "relight_strip", "turntable", "view_camera",
]
