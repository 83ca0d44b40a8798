"""A complete head around a reconstructed face: head-model transfer (blend weights, skin tone, geometry, maps)."""

from avatarme_edu.completion.transfer import HeadTransferInfo, head_model_maps, transfer_to_head

__all__ = ["HeadTransferInfo", "head_model_maps", "transfer_to_head"]
