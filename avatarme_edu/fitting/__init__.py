"""Stage 1 of AvatarMe, fitting: from one photo to the face's landmarks and identity.

* :mod:`~avatarme_edu.fitting.dlib_models`    - where dlib's model files are (by path, no download);
* :mod:`~avatarme_edu.fitting.landmarks`      - face detection, 68 iBUG landmarks, choosing the face;
* :mod:`~avatarme_edu.fitting.dlib_serialize` - reading dlib's binary network files;
* :mod:`~avatarme_edu.fitting.identity`       - dlib's face-recognition ResNet in torch (identity loss);
* :mod:`~avatarme_edu.fitting.face_align`     - dlib's face-chip alignment as a differentiable crop;
* :mod:`~avatarme_edu.fitting.diff_render`    - the differentiable renderer (soft outlines, SH light, per-pixel UV);
* :mod:`~avatarme_edu.fitting.texture_model`  - the texture-model protocol and the PCA baseline;
* :mod:`~avatarme_edu.fitting.fit_stages`     - crop, starting camera, parameters, losses;
* :mod:`~avatarme_edu.fitting.fit`            - ``fit(photo, profile)``: landmarks, then the full objective;
* :mod:`~avatarme_edu.fitting.fit_report`     - texture from the photo, rendering over it, the report;
* :mod:`~avatarme_edu.fitting.fit_cli`        - writing a fit, ``avatarme-edu fit PHOTO --out DIR`` and ``same-person``;
* :mod:`~avatarme_edu.fitting.cross_photo`    - the cross-photo check: a fit seen from another photo's camera;
* :mod:`~avatarme_edu.fitting.synthetic`      - the synthetic check on held-out light-stage subjects.

The 68-point landmark model was trained on iBUG 300-W, whose terms exclude commercial use.
"""

from avatarme_edu.fitting.dlib_models import DlibModelError
from avatarme_edu.fitting.face_align import face_chip, similarity_from_landmarks
from avatarme_edu.fitting.identity import (SAME_PERSON_DISTANCE, DlibFaceNet, descriptor_distance,
                                           identity_loss, load_face_net)
from avatarme_edu.fitting.fit import FitResult, fit
from avatarme_edu.fitting.fit_stages import FitConfig
from avatarme_edu.fitting.texture_model import PCATextureModel, TextureModel, default_texture_model
from avatarme_edu.fitting.landmarks import (Face, FaceNotFoundError, FaceWarning, SeveralFacesWarning,
                                            UncertainFaceWarning, detect_face, detect_faces)

__all__ = [
    "DlibModelError", "face_chip", "similarity_from_landmarks", "SAME_PERSON_DISTANCE", "DlibFaceNet",
    "descriptor_distance", "identity_loss", "load_face_net", "Face", "FaceNotFoundError",
    "FaceWarning", "SeveralFacesWarning", "UncertainFaceWarning", "detect_face", "detect_faces",
    "fit", "FitConfig", "FitResult", "TextureModel", "PCATextureModel", "default_texture_model",
]
