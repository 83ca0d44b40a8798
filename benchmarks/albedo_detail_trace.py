"""Does the virtual subjects' diffuse albedo carry a trace of the pores and wrinkles?

The normals networks ρ(gray(A_D), N_T) -> N_S and σ(gray(A_D), N_O) -> N_D see the shape normals
(smooth, no skin detail) and the grey diffuse albedo. Whatever pore and wrinkle detail they are to
put into the normals must therefore be readable from gray(A_D). The skin painter darkens pore and
wrinkle floors a little (``lightstage/skin.py``); this script measures how much of the detail that
leaves in the albedo, on the face's skin, at the cpu map size:

1. ``corr(hp gray, hp height)``: correlation of the high-passed grey albedo with the high-passed
   relief (height, mm); hp = the map minus its Gaussian blur (sigma 2 texels).
2. ``R2 slope``: the detail of the specular normals is the slope of the relief, ``N_S - N_T`` in the
   tangent plane. Fit it by least squares from the gradient of hp gray (a 2x2 matrix and an offset,
   any axis or sign convention): R2 says which part of the normal detail a *linear, local* reader
   of the albedo can explain. The same fit from the gradient of hp height is the ceiling (the
   normals are made from the height).
3. ``N_T err`` / ``linear err``: mean angle (degrees) between N_S and the shape normals N_T (the
   ``shape_normals`` baseline), and between N_S and N_T corrected by the best linear reader of the
   grey albedo's gradients at two scales - a rough floor for what the albedo alone can give.

Run: ``PYTHONPATH=. python benchmarks/albedo_detail_trace.py [seeds...]`` (default 4 9 14, held out).
"""

from __future__ import annotations

import sys

import torch

from avatarme_edu.color import luminance
from avatarme_edu.imaging import gaussian_blur
from avatarme_edu.lightstage.subjects import make_subject
from avatarme_edu.profiles import get_profile


def highpass(x: torch.Tensor, mask: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    x = x.float()
    return ((x - gaussian_blur(x, sigma, mask)) * mask).double()


def gradient(x: torch.Tensor) -> torch.Tensor:
    """``(1, H, W) -> (2, H, W)`` central differences along columns and rows."""
    gx = torch.zeros_like(x[0])
    gy = torch.zeros_like(x[0])
    gx[:, 1:-1] = (x[0, :, 2:] - x[0, :, :-2]) / 2
    gy[1:-1] = (x[0, 2:] - x[0, :-2]) / 2
    return torch.stack([gx, gy])


def linear_fit(features: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Least-squares fit ``target ~ features @ A + b`` (``(n, k)`` features, ``(n, m)`` targets): (fit, R2)."""
    f = torch.cat([features, torch.ones(features.shape[0], 1, dtype=features.dtype)], 1)
    fit = f @ torch.linalg.lstsq(f, target).solution
    return fit, float(1 - (target - fit).square().sum() / (target - target.mean(0)).square().sum())


def r2_linear(features: torch.Tensor, target: torch.Tensor) -> float:
    return linear_fit(features, target)[1]


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle between ``(n, 3)`` vectors in degrees."""
    a, b = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    return torch.rad2deg(torch.atan2(torch.linalg.cross(a, b).norm(dim=1), (a * b).sum(1)))


def measure(seed: int, profile) -> dict:
    s = make_subject(seed, profile)
    mask = s.mask
    skin = mask & (s.regions["face"] > 0.5)
    for hair in ("brows", "eyes", "eyeballs", "lips"):  # not skin, or no pores
        if hair in s.regions:
            skin &= s.regions[hair] < 0.1
    core = skin.clone()  # stay clear of the region's border, where the differences read outside
    core[1:-1, 1:-1] &= skin[:-2, 1:-1] & skin[2:, 1:-1] & skin[1:-1, :-2] & skin[1:-1, 2:]
    gray = highpass(luminance(s.reflectance.diffuse_albedo).double(), mask)
    height = highpass(s.height.double(), mask)
    detail = (s.reflectance.specular_normals - s.shape.normals_tangent).double()[:2]  # tangent-plane slope
    detail = highpass(detail, mask)
    pick = core
    g, h = gray[0][pick], height[0][pick]
    corr = float(torch.corrcoef(torch.stack([g, h]))[0, 1])
    target = detail[:, pick].T
    r2_gray = r2_linear(gradient(gray)[:, pick].T, target)
    r2_height = r2_linear(gradient(height)[:, pick].T, target)
    # the specular-normal error left when N_T is corrected by the best linear reader of the albedo's
    # gradients at two scales (0-2 and 2-6 texels): how far a "local, linear" network could get
    band = (gaussian_blur(luminance(s.reflectance.diffuse_albedo), 2.0, mask)
            - gaussian_blur(luminance(s.reflectance.diffuse_albedo), 6.0, mask)).double()
    feats = torch.cat([gradient(gray), gradient(band)])[:, pick].T
    n_s = s.reflectance.specular_normals.double()[:, pick].T
    n_t = s.shape.normals_tangent.double()[:, pick].T
    fit, _ = linear_fit(feats, (n_s - n_t)[:, :2])
    corrected = n_t + torch.cat([fit, torch.zeros_like(fit[:, :1])], 1)
    base_err, lin_err = float(angle_deg(n_t, n_s).mean()), float(angle_deg(corrected, n_s).mean())
    contrast = float(g.std() / luminance(s.reflectance.diffuse_albedo)[0][pick].double().mean())
    return {"seed": seed, "texels": int(pick.sum()), "corr_hp_gray_height": corr, "r2_slope_from_gray": r2_gray,
            "r2_slope_from_height": r2_height, "hp_gray_contrast": contrast,
            "shape_normals_error_deg": base_err, "linear_reader_error_deg": lin_err}


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    profile = get_profile("cpu", device="cpu")
    seeds = [int(a) for a in argv] or [4, 9, 14]
    print(f"cpu profile, maps {profile.map_hw}, face skin texels; hp = map - blur(sigma 2 texels)")
    print(f"{'seed':>5} {'texels':>7} {'corr(hp gray, hp height)':>25} {'R2 slope <- gray':>17} "
          f"{'R2 slope <- height':>19} {'hp gray / gray':>15} {'N_T err':>8} {'linear err':>10}")
    for seed in seeds:
        m = measure(seed, profile)
        print(f"{m['seed']:>5} {m['texels']:>7} {m['corr_hp_gray_height']:>25.3f} {m['r2_slope_from_gray']:>17.3f} "
              f"{m['r2_slope_from_height']:>19.3f} {m['hp_gray_contrast']:>15.4f} "
              f"{m['shape_normals_error_deg']:>8.2f} {m['linear_reader_error_deg']:>10.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
