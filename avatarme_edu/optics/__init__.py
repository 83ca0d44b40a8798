"""Physics shared by the renderer and the virtual light stage: specular lobes (BRDFs), subsurface
scattering in texture space, shadow maps. Below both, so neither imports the other for it."""

from avatarme_edu.optics.brdf import (SKIN_F0, SKIN_GGX_ALPHA, SKIN_PERCEPTUAL_ROUGHNESS, blinn_phong_lobe,
                                      fresnel_schlick, ggx_lobe, ggx_reflectance, roughness_to_alpha)
from avatarme_edu.optics.shadows import shadow_and_occlusion, shadow_visibility, splat_visibility
from avatarme_edu.optics.subsurface import SKIN_DIFFUSION_PROFILE, subsurface_blur

__all__ = [
    "SKIN_F0", "SKIN_GGX_ALPHA", "SKIN_PERCEPTUAL_ROUGHNESS", "blinn_phong_lobe", "fresnel_schlick", "ggx_lobe",
    "ggx_reflectance", "roughness_to_alpha", "shadow_and_occlusion", "shadow_visibility", "splat_visibility",
    "SKIN_DIFFUSION_PROFILE", "subsurface_blur",
]
