"""A complete head around a reconstructed face: head-model transfer (blend weights, skin tone, geometry, maps)."""

from avatarme_edu.public import public_face

# public name -> its module (loaded on first use, see avatarme_edu.public)
_HOMES = {
    "HeadTransferInfo": "transfer", "head_model_maps": "transfer", "transfer_to_head": "transfer",
}
__all__ = list(_HOMES)
__getattr__, __dir__ = public_face(__name__, _HOMES)
