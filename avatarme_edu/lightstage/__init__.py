"""The virtual light stage: where the ground truth and the training data come from (DESIGN.md section 4).

* :mod:`~avatarme_edu.lightstage.skin_params`, :mod:`~avatarme_edu.lightstage.pigments`,
  :mod:`~avatarme_edu.lightstage.relief`, :mod:`~avatarme_edu.lightstage.skin` - procedural skin;
* :mod:`~avatarme_edu.lightstage.subjects` - a subject: EduHead shape + skin maps;
* :mod:`~avatarme_edu.lightstage.sphere` - the rig: polarised LED sphere and camera arc;
* :mod:`~avatarme_edu.lightstage.capture` - the polarised spherical-gradient photographs;
* :mod:`~avatarme_edu.lightstage.separation` - the maps recovered from them (Ma et al. 2007);
* :mod:`~avatarme_edu.lightstage.wild` - in-the-wild textures of a subject;
* :mod:`~avatarme_edu.lightstage.dataset` - many subjects on disk, split by identity.
"""

from avatarme_edu.lightstage.capture import capture_subject
from avatarme_edu.lightstage.dataset import make_dataset
from avatarme_edu.lightstage.separation import recovery_report, separate, to_reflectance_maps
from avatarme_edu.lightstage.skin import skin_reflectance
from avatarme_edu.lightstage.skin_params import SkinParams, sample_skin_params, skin_params_for_type
from avatarme_edu.lightstage.sphere import make_light_stage
from avatarme_edu.lightstage.subjects import Subject, make_subject, make_subject_expressions
from avatarme_edu.lightstage.wild import WildParams, wild_texture

__all__ = [
    "capture_subject", "make_dataset", "recovery_report", "separate", "to_reflectance_maps", "skin_reflectance",
    "SkinParams", "sample_skin_params", "skin_params_for_type", "make_light_stage", "Subject", "make_subject",
    "make_subject_expressions", "WildParams", "wild_texture",
]
