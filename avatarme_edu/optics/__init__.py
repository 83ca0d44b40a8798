"""Physics shared by the renderer and the virtual light stage: specular lobes (BRDFs), subsurface
scattering in texture space, shadow maps. Below both, so neither imports the other for it."""

from avatarme_edu.public import public_face

# public name -> its module (loaded on first use, see avatarme_edu.public)
_HOMES = {
    "SKIN_F0": "brdf", "SKIN_GGX_ALPHA": "brdf", "SKIN_PERCEPTUAL_ROUGHNESS": "brdf", "blinn_phong_lobe": "brdf",
    "fresnel_schlick": "brdf", "ggx_lobe": "brdf", "ggx_reflectance": "brdf", "roughness_to_alpha": "brdf",
    "shadow_and_occlusion": "shadows", "shadow_visibility": "shadows", "splat_visibility": "shadows",
    "SKIN_DIFFUSION_PROFILE": "subsurface", "subsurface_blur": "subsurface",
}
__all__ = list(_HOMES)
__getattr__, __dir__ = public_face(__name__, _HOMES)
