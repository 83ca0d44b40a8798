import pytest
import torch

from avatarme_edu.lightstage import skin_params as SP


def test_params_are_validated_with_the_valid_range_in_the_message():
    with pytest.raises(ValueError, match=r"melanin must be in \[0.003, 0.5\]"):
        SP.SkinParams(melanin=0.9)
    with pytest.raises(ValueError, match="age"):
        SP.SkinParams(age=5)
    with pytest.raises(ValueError, match="moles"):
        SP.SkinParams(moles=2.5)
    with pytest.raises(ValueError, match="fitzpatrick"):
        SP.skin_params_for_type(7)


def test_sampled_population_is_deterministic_valid_and_spans_light_to_very_dark():
    a = SP.sample_skin_params(torch.Generator().manual_seed(11))
    b = SP.sample_skin_params(torch.Generator().manual_seed(11))
    assert a == b
    g = torch.Generator().manual_seed(0)
    people = [SP.sample_skin_params(g) for _ in range(120)]
    mel = sorted(p.melanin for p in people)
    assert mel[0] < 0.012 and mel[-1] > 0.28  # Fitzpatrick I and VI both present
    assert 0.25 < sum(p.beard > 0 for p in people) / 120 < 0.65
    assert any(p.scalp_hair == 0 for p in people) and any(p.freckles > 0 for p in people)
    assert len({p for p in people}) == 120  # every subject differs


def test_oiliness_follows_what_the_diffuse_albedo_shows():
    """Sebum output rises with pore size, falls with age, is higher with a beard; a little is chance.
    Drawn alone it could not be inferred from A_D (the specular-albedo network's input)."""
    import numpy as np

    g = torch.Generator().manual_seed(0)
    people = [SP.sample_skin_params(g) for _ in range(400)]
    oil = np.array([p.oiliness for p in people])
    corr = lambda a: float(np.corrcoef(oil, np.array(a))[0, 1])  # noqa: E731
    assert corr([np.log(p.pore_size) for p in people]) > 0.5
    assert corr([p.age for p in people]) < -0.3
    bearded = np.array([p.beard > 0 for p in people])
    assert oil[bearded].mean() - oil[~bearded].mean() > 0.1
    assert oil.min() >= 0 and oil.max() <= 1 and 0.15 < oil.std() < 0.35  # still the whole range, spread out
    # what the three traits leave unexplained (least squares) is small: the chance part
    X = np.column_stack([np.ones(400), [np.log(p.pore_size) for p in people], [p.age for p in people], bearded])
    resid = oil - X @ np.linalg.lstsq(X, oil, rcond=None)[0]
    assert resid.var() < 0.15 * oil.var()
