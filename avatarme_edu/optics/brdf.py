"""Specular reflection of skin: the BRDF lobes that the renderer and the light stage share.

Skin reflects light twice: once at its oily surface (specular, colourless, kept polarised) and once
after scattering inside (diffuse). This module holds the *surface* part, as functions of cosines so
they work on any tensor shape:

* :func:`fresnel_schlick` - how much a surface reflects at an angle, ``F0 + (1 - F0)(1 - cos)^5``;
* :func:`blinn_phong_lobe` - the normalised Blinn-Phong lobe, the classic real-time approximation;
* :func:`ggx_lobe` - the GGX (Trowbridge-Reitz) microfacet lobe ``D * V`` with Smith visibility,
  either *height-correlated* (Heitz 2014, what the renderer uses) or *separable* ``G1(l) G1(v)``
  (what the light-stage simulation uses);
* :func:`ggx_reflectance` - the complete ``f_s(l, v) * max(0, n.l)``: lobe, Fresnel and cosine.

**Which roughness.** Two numbers describe one lobe and are easy to mix up: the microfacet
``alpha`` (the width in the GGX formula) and the *perceptual* roughness artists and glTF use,
``alpha = roughness**2`` (:func:`roughness_to_alpha`). Every function here takes ``alpha``; names of
constants say which one they hold.
"""

from __future__ import annotations

import math

import torch

#: Refractive index of skin's surface (oil film, stratum corneum).
SKIN_IOR = 1.4
#: Skin's Fresnel reflectance at normal incidence, ((SKIN_IOR - 1) / (SKIN_IOR + 1))^2 = 0.0278, rounded.
SKIN_F0 = 0.028
#: GGX ``alpha`` of skin's specular lobe in the light-stage simulation (Weyrich et al. 2006 measured ~0.3-0.45).
SKIN_GGX_ALPHA = 0.35
#: Perceptual roughness the renderer and the glTF export use by default (``alpha`` = 0.45^2 ~ 0.2): at
#: texture resolution the specular normals already hold the pores, so the lobe itself is narrower.
SKIN_PERCEPTUAL_ROUGHNESS = 0.45
SMITH_MODELS = ("correlated", "separable")


def roughness_to_alpha(roughness: float) -> float:
    """Perceptual roughness in (0, 1] -> microfacet ``alpha = roughness**2`` (the usual remapping)."""
    return roughness * roughness


def alpha_to_blinn_exponent(alpha: float) -> float:
    """The Blinn-Phong exponent whose lobe matches a Beckmann/GGX ``alpha`` (Walter et al. 2007)."""
    return 2.0 / (alpha * alpha) - 2.0


def fresnel_schlick(cos_theta: torch.Tensor, f0: float) -> torch.Tensor:
    """Schlick's approximation of the Fresnel reflectance, ``F0 + (1 - F0) (1 - cos)^5``."""
    return f0 + (1.0 - f0) * (1.0 - cos_theta.clamp(0.0, 1.0)) ** 5


def blinn_phong_lobe(n_dot_h: torch.Tensor, exponent: float) -> torch.Tensor:
    """Normalised Blinn-Phong BRDF without Fresnel, ``(s + 8) / (8 pi) * (n.h)^s``.

    The ``(s + 8) / (8 pi)`` factor keeps the reflected energy about constant as the lobe narrows, so a
    sharper highlight is brighter, not dimmer.
    """
    return (exponent + 8.0) / (8.0 * math.pi) * n_dot_h.clamp(0.0, 1.0) ** exponent


def ggx_distribution(n_dot_h: torch.Tensor, alpha: float) -> torch.Tensor:
    """GGX normal distribution ``D(h) = alpha^2 / (pi ((n.h)^2 (alpha^2 - 1) + 1)^2)``."""
    a2 = alpha * alpha
    nh = n_dot_h.clamp(0.0, 1.0)
    return a2 / (math.pi * (nh * nh * (a2 - 1.0) + 1.0) ** 2)


def smith_visibility(n_dot_l: torch.Tensor, n_dot_v: torch.Tensor, alpha: float,
                     smith: str = "correlated") -> torch.Tensor:
    """Smith's visibility ``V = G / (4 n.l n.v)`` for GGX, written so grazing angles stay finite.

    ``smith="correlated"``: the height-correlated masking-shadowing of Heitz (2014);
    ``"separable"``: ``G = G1(l) G1(v)``, each ``G1(c) = 2c / (c + sqrt(alpha^2 + (1 - alpha^2) c^2))``.
    """
    if smith not in SMITH_MODELS:
        raise ValueError(f"smith must be one of {SMITH_MODELS}, got {smith!r}")
    a2 = alpha * alpha
    nl, nv = n_dot_l.clamp(0.0, 1.0), n_dot_v.clamp(0.0, 1.0)
    root_l = torch.sqrt(nl * nl * (1.0 - a2) + a2)
    root_v = torch.sqrt(nv * nv * (1.0 - a2) + a2)
    if smith == "correlated":
        return 0.5 / (nl * root_v + nv * root_l).clamp_min(1e-6)
    # G1(c) / c = 2 / (c + root): the cosines cancel against the denominator
    return 0.25 * (2.0 / (nl + root_l)) * (2.0 / (nv + root_v))


def ggx_lobe(n_dot_h: torch.Tensor, n_dot_l: torch.Tensor, n_dot_v: torch.Tensor, alpha: float,
             smith: str = "correlated") -> torch.Tensor:
    """GGX microfacet BRDF without Fresnel: ``D(h) * V(l, v)``. Inputs are cosines (any shape)."""
    return ggx_distribution(n_dot_h, alpha) * smith_visibility(n_dot_l, n_dot_v, alpha, smith)


def ggx_reflectance(n_dot_l: torch.Tensor, n_dot_v: torch.Tensor, n_dot_h: torch.Tensor, v_dot_h: torch.Tensor,
                    alpha: float = SKIN_GGX_ALPHA, f0: float = SKIN_F0, smith: str = "separable") -> torch.Tensor:
    """The specular BRDF times the cosine, ``f_s(l, v) * max(0, n.l)`` with ``f_s = D V F``.

    Zero where the light or the viewer is below the surface. The defaults are the light-stage
    simulation's skin lobe (:data:`SKIN_GGX_ALPHA`, :data:`SKIN_F0`, separable Smith).
    """
    lobe = ggx_lobe(n_dot_h, n_dot_l, n_dot_v, alpha, smith)
    return lobe * fresnel_schlick(v_dot_h, f0) * n_dot_l.clamp_min(0.0) * (n_dot_v > 0)
