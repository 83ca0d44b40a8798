"""The virtual light stage: where the ground truth and the training data come from (docs/design.md section 4).

* :mod:`~avatarme_edu.lightstage.skin_params`, :mod:`~avatarme_edu.lightstage.pigments`,
  :mod:`~avatarme_edu.lightstage.relief`, :mod:`~avatarme_edu.lightstage.skin` - procedural skin;
* :mod:`~avatarme_edu.lightstage.subjects` - a subject: EduHead shape + skin maps;
* :mod:`~avatarme_edu.lightstage.sphere` - the rig: polarised LED sphere and camera arc;
* :mod:`~avatarme_edu.lightstage.capture` - the polarised spherical-gradient photographs;
* :mod:`~avatarme_edu.lightstage.separation` - the maps recovered from them (Ma et al. 2007);
* :mod:`~avatarme_edu.lightstage.wild` - in-the-wild textures of a subject;
* :mod:`~avatarme_edu.lightstage.fresh_lows` - super-resolution pairs degraded afresh for training;
* :mod:`~avatarme_edu.lightstage.albedo_marks` - dark marks painted into de-lighting patches (pigment is not light);
* :mod:`~avatarme_edu.lightstage.dataset` - many subjects on disk, split by identity.
"""

from avatarme_edu.public import public_face

# public name -> its module (loaded on first use, see avatarme_edu.public)
_HOMES = {
    "capture_subject": "capture", "make_dataset": "dataset", "recovery_report": "separation",
    "separate": "separation", "to_reflectance_maps": "separation", "skin_reflectance": "skin",
    "SkinParams": "skin_params", "sample_skin_params": "skin_params", "skin_params_for_type": "skin_params",
    "make_light_stage": "sphere", "Subject": "subjects", "make_subject": "subjects",
    "make_subject_expressions": "subjects", "WildParams": "wild", "wild_texture": "wild",
}
__all__ = list(_HOMES)
__getattr__, __dir__ = public_face(__name__, _HOMES)
