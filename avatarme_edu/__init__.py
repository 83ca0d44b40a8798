"""avatarme-edu: an educational implementation of AvatarMe (Lattas et al., CVPR 2020).

The library is grouped by pipeline stage; the notebooks import from it and do not define algorithms.
Every function that depends on sizes or the device takes a :class:`~avatarme_edu.profiles.Profile`.

Layers, lowest first. A module imports only from its own layer or a lower one, never upwards, and no
two modules import each other (``tests/test_layers.py`` reads this list and checks the import graph,
function-local imports included):

    0  base: profiles, color, imaging, reflectance, metrics, tiling, maps_io, public, resources (and any
       other top-level module)
    1  geometry: meshes, the EduHead model, rasterising, UV baking, texel sizes
    2  optics: physics shared by the renderer and the light stage - BRDF lobes, subsurface blur, shadow maps
    3  render: lights, texture-space shading, views, exports and viewers
    4  lightstage: the virtual light stage - subjects, capture and separation, wild textures, dataset
    5  completion: a complete head around a reconstructed face (head-model transfer)
    5  nets: the networks (RCAN, pix2pixHD), their tasks, weights and training
    6  stages, evaluation, cascade, fitting: the reflectance stages run over whole maps, scored against
       baselines; training a network on the stage before's output; fitting a photo (GANFIT-style)
    7  figures, pipeline, pipeline_io, end_to_end: every plot and display panel; the whole pipeline,
       one photo to an avatar (``reconstruct``), written to a folder; scored end to end on held-out subjects
    8  demo, cli: the programs

The front door: ``avatarme_edu.reconstruct(photo, profile="cpu") -> Avatar`` runs the whole pipeline
(:mod:`avatarme_edu.pipeline`). It is looked up on first use (PEP 562 ``__getattr__``), so importing
the package stays cheap and this base-layer module imports nothing above it.

Each subpackage's ``__init__`` lists its public face in ``__all__``. The technical design (data flow,
conventions, profiles, layout, tests) is ``docs/design.md`` in the repository.
"""

from avatarme_edu.profiles import Profile, get_profile

__all__ = ["Profile", "get_profile", "reconstruct", "Avatar"]
__version__ = "0.1.0"
_LAZY = {"reconstruct": "avatarme_edu.pipeline", "Avatar": "avatarme_edu.pipeline"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'avatarme_edu' has no attribute {name!r}")
