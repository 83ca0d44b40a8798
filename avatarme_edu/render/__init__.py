"""Rendering AvatarMe's maps: lights, texture-space shading, camera views, exports and viewers."""

from avatarme_edu.public import public_face

# public name -> its module (loaded on first use, see avatarme_edu.public)
_HOMES = {
    "export_glb": "export", "export_obj": "export", "write_html_viewer": "html_viewer", "PRESETS": "lights",
    "DirectionalLight": "lights", "PointLight": "lights", "SHEnvironment": "lights", "render_view": "shading",
    "shade_uv": "shading", "avatar_scene": "threejs", "compare_renders": "views", "relight_strip": "views",
    "turntable": "views", "view_camera": "views",
}
__all__ = list(_HOMES)
__getattr__, __dir__ = public_face(__name__, _HOMES)
