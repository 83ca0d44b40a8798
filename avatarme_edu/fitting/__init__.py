"""Stage 1 of AvatarMe, fitting: from one photo to the face's landmarks and identity.

* :mod:`~avatarme_edu.fitting.dlib_models`    - where dlib's model files are (by path, no download);
* :mod:`~avatarme_edu.fitting.landmarks`      - face detection, 68 iBUG landmarks, choosing the face;
* :mod:`~avatarme_edu.fitting.dlib_serialize` - reading dlib's binary network files;
* :mod:`~avatarme_edu.fitting.identity`       - dlib's face-recognition ResNet in torch (identity loss);
* :mod:`~avatarme_edu.fitting.face_align`     - dlib's face-chip alignment as a differentiable crop.

The 68-point landmark model was trained on iBUG 300-W, whose terms exclude commercial use.
"""

from avatarme_edu.fitting.dlib_models import DlibModelError
from avatarme_edu.fitting.face_align import face_chip, similarity_from_landmarks
from avatarme_edu.fitting.identity import (SAME_PERSON_DISTANCE, DlibFaceNet, descriptor_distance,
                                           identity_loss, load_face_net)
from avatarme_edu.fitting.landmarks import (Face, FaceNotFoundError, FaceWarning, SeveralFacesWarning,
                                            UncertainFaceWarning, detect_face, detect_faces)

__all__ = [
    "DlibModelError", "face_chip", "similarity_from_landmarks", "SAME_PERSON_DISTANCE", "DlibFaceNet",
    "descriptor_distance", "identity_loss", "load_face_net", "Face", "FaceNotFoundError",
    "FaceWarning", "SeveralFacesWarning", "UncertainFaceWarning", "detect_face", "detect_faces",
]
