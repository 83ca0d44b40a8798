import torch

from avatarme_edu.lightstage import pigments as P
from avatarme_edu.lightstage import skin_params as SP


def test_pigment_model_gets_darker_with_melanin_and_redder_with_blood():
    mel = torch.tensor([SP.FITZPATRICK_MELANIN[t] for t in range(1, 7)])
    rgb = P.pigment_rgb(mel, 0.02, 0.3)
    lum = rgb @ torch.tensor([0.2126, 0.7152, 0.0722])
    assert torch.all(lum[1:] < lum[:-1])
    assert float(lum[0] / lum[-1]) > 6
    assert torch.all(rgb[:, 0] > rgb[:, 1]) and torch.all(rgb[:, 1] > rgb[:, 2])  # skin is warm
    pale, flushed = P.pigment_rgb(0.02, 0.01, 0.3), P.pigment_rgb(0.02, 0.08, 0.3)
    assert float(flushed[0] / flushed[1]) > float(pale[0] / pale[1]) + 0.1
    # a white reflector's normalisation: no pigment and no blood is close to white-ish, never above 1
    assert float(P.pigment_rgb(0.003, 0.005, 0.0).max()) <= 1.0
