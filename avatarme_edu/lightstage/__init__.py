"""The virtual light stage: where the ground truth and the training data come from (DESIGN.md section 4).

* :mod:`~avatarme_edu.lightstage.sphere`  - the rig: polarised LED sphere and camera arc;
* :mod:`~avatarme_edu.lightstage.skin`    - procedural subjects' reflectance maps;
* :mod:`~avatarme_edu.lightstage.capture` - the polarised spherical-gradient capture and separation.

Import the submodules directly (``from avatarme_edu.lightstage.capture import separate``); this
package file imports nothing so that ``import avatarme_edu.lightstage`` stays instant.
"""
