"""EduHead: the project's own parametric head model (a small, fully documented 3DMM).

How it is made - each step is a module you can read on its own:

1. **Sculpt** (:mod:`~avatarme_edu.geometry.sculpt`): a head is a signed distance field built
   from ellipsoids and capsules with smooth unions, driven by 26 interpretable measurements
   (:class:`HeadParams`: head width, jaw width, nose length, eye spacing, lip fullness ...).
2. **Template** (:mod:`~avatarme_edu.geometry.template`): rays from a fixed head centre, one per
   grid vertex, find the outermost surface; so every head has the same vertices, triangles and UVs.
   The UV layout is 3:2 and gives the face most of the texels.
3. **Population and PCA** (this module): 200 heads drawn with :func:`sample_head_params` are
   summarised the classic 3DMM way, ``S = mean + sum_k c_k sqrt(var_k) component_k`` with
   ``c_k ~ N(0, 1)``; ``K`` components keep at least 99 % of the population's shape variance.
   The stored model has K = 19 (99.1 %). A population member rebuilt from its 19 coefficients is
   within 0.2-0.35 mm RMS of its sculpted mesh; the few vertices off by more than 2 mm (under 2 %)
   sit where a ray grazes a silhouette (ear lobe, nose wings) and jumps between surfaces.
4. **Expressions** (:mod:`~avatarme_edu.geometry.expressions`): blendshape offsets added on top.
5. **Landmarks and regions** (:mod:`~avatarme_edu.geometry.landmarks`,
   :mod:`~avatarme_edu.geometry.regions`): the 68 iBUG points as vertex ids, soft region weights.

Use::

    head = load_eduhead()                       # cached; reads avatarme_edu/data/eduhead/eduhead.safetensors
    mesh = head.mesh(head.sample_identity(torch.Generator().manual_seed(0)), expression="smile")
    lms = head.landmarks(mesh.vertices)         # (68, 3)

Everything in :meth:`EduHead.vertices` is linear in the identity coefficients and expression
weights, so fitting can optimise both with autograd.

The stored model is rebuilt (deterministically from its seed) with::

    python -m avatarme_edu.geometry.head --build        # about a minute on a laptop CPU
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from avatarme_edu.geometry import template
from avatarme_edu.geometry.expressions import (
    BLENDSHAPE_NAMES,
    EXPRESSION_WEIGHTS,
    EXPRESSIONS,
    blendshapes,
    expression_weights,
)
from avatarme_edu.geometry.landmarks import landmark_indices
from avatarme_edu.geometry.mesh import Mesh
from avatarme_edu.geometry.regions import REGION_NAMES, display_colors, vertex_regions
from avatarme_edu.geometry.sculpt import PARAM_NAMES, PARAM_RANGES, HeadParams, sample_head_params
from avatarme_edu.geometry.template_fit import canonical_vertices, sculpt_vertices
from avatarme_edu.resources import data_path

__all__ = [
    "EduHead", "HeadParams", "PARAM_RANGES", "EXPRESSIONS", "EXPRESSION_WEIGHTS", "BLENDSHAPE_NAMES",
    "REGION_NAMES", "build_eduhead", "load_eduhead", "save_eduhead", "sample_head_params",
    "DATA_PATH", "N_HEADS", "SEED", "VARIANCE_KEPT",
]

DATA_PATH = data_path("eduhead", "eduhead.safetensors")  # package data, see avatarme_edu/resources.py
N_HEADS = 200  # population size of the stored model
SEED = 0  # its seed
VARIANCE_KEPT = 0.99  # the basis keeps at least this fraction of the population's shape variance
MODEL_VERSION = "1"


@dataclass
class EduHead:
    """The EduHead model: a PCA identity basis and expression blendshapes on one fixed topology.

    Shapes (``V`` vertices, ``F`` triangles, ``K`` identity components, ``B`` blendshapes):
    ``mean`` (V, 3) m; ``components`` (K, V, 3) unit-norm principal directions; ``variances`` (K,) m^2;
    ``faces`` (F, 3) int64; ``uvs`` (V, 2); ``weld`` (V,) id of each vertex's first copy (seam and
    poles); ``landmark_ids`` (68,) int64; ``blendshape_offsets`` (B, V, 3) m; ``regions``
    {name: (V,)}; ``population_params`` (N, P) and ``population_coeffs`` (N, K) of the heads the
    basis was fitted to; ``canonical`` (V, 3) the population-mean parameters' head.
    ``total_variance`` the population's whole variance (so ``variances.sum() / total_variance`` is
    the fraction the basis keeps).
    """

    mean: torch.Tensor
    components: torch.Tensor
    variances: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor
    weld: torch.Tensor
    landmark_ids: torch.Tensor
    blendshape_offsets: torch.Tensor
    regions: dict
    population_params: torch.Tensor
    population_coeffs: torch.Tensor
    canonical: torch.Tensor
    total_variance: torch.Tensor  # () the population's total shape variance, m^2

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def n_vertices(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_identity(self) -> int:
        """K, the number of identity coefficients."""
        return int(self.components.shape[0])

    @property
    def explained_variance(self) -> float:
        """Fraction of the population's shape variance the K components keep."""
        return float(self.variances.sum() / self.total_variance)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def to(self, device) -> "EduHead":
        moved = {k: (v.to(device) if torch.is_tensor(v) else {n: t.to(device) for n, t in v.items()})
                 for k, v in self.__dict__.items()}
        return EduHead(**moved)

    # ---- identity ----------------------------------------------------------------------------
    def _coeffs(self, coeffs) -> torch.Tensor:
        if coeffs is None:
            return torch.zeros(self.n_identity, dtype=self.mean.dtype, device=self.device)
        coeffs = torch.as_tensor(coeffs, dtype=self.mean.dtype, device=self.device)
        if coeffs.shape[-1:] != (self.n_identity,):
            raise ValueError(f"identity coefficients must have last dimension K = {self.n_identity}, "
                             f"got shape {tuple(coeffs.shape)}")
        return coeffs

    def shape(self, coeffs=None) -> torch.Tensor:
        """Identity shape ``(..., V, 3)`` from coefficients ``(..., K)`` (None: the mean head).

        ``S = mean + sum_k c_k sqrt(var_k) component_k``; ``c ~ N(0, 1)`` samples the population.
        Differentiable with respect to ``coeffs``.
        """
        c = self._coeffs(coeffs)
        scaled = c * self.variances.sqrt()
        flat = scaled @ self.components.reshape(self.n_identity, -1)
        out = self.mean + flat.reshape(*c.shape[:-1], self.n_vertices, 3)
        return out[..., self.weld, :]  # seam and pole copies bit-identical, so normals weld

    def sample_identity(self, generator: torch.Generator | None = None, n: int | None = None,
                        scale: float = 1.0) -> torch.Tensor:
        """Random identity coefficients ``(K,)`` (or ``(n, K)``), standard normal times ``scale``."""
        size = (self.n_identity,) if n is None else (n, self.n_identity)
        c = torch.randn(size, generator=generator, dtype=torch.float32)
        return (scale * c).to(self.device)

    def population_identity(self, index: int) -> torch.Tensor:
        """Coefficients ``(K,)`` of population member ``index`` (its params: ``population_params``)."""
        n = self.population_coeffs.shape[0]
        if not 0 <= index < n:
            raise ValueError(f"population index must be in [0, {n - 1}], got {index}")
        return self.population_coeffs[index]

    def project(self, vertices: torch.Tensor) -> torch.Tensor:
        """Coefficients ``(..., K)`` of the basis' closest shape to ``vertices`` ``(..., V, 3)``."""
        d = (vertices.to(self.mean) - self.mean).reshape(*vertices.shape[:-2], -1)
        return (d @ self.components.reshape(self.n_identity, -1).T) / self.variances.sqrt()

    # ---- expressions -------------------------------------------------------------------------
    def expression_offsets(self, expression="neutral") -> torch.Tensor:
        """Offsets ``(..., V, 3)`` of an expression: a name in :data:`EXPRESSIONS`, a dict of
        blendshape weights, or a weight tensor ``(..., B)`` in :data:`BLENDSHAPE_NAMES` order
        (differentiable)."""
        if torch.is_tensor(expression):
            w = expression.to(self.mean)
            if w.shape[-1:] != (len(BLENDSHAPE_NAMES),):
                raise ValueError(f"expression weights must have last dimension {len(BLENDSHAPE_NAMES)} "
                                 f"({', '.join(BLENDSHAPE_NAMES)}), got shape {tuple(w.shape)}")
        else:
            weights = expression_weights(expression)
            w = torch.stack([torch.as_tensor(weights.get(n, 0.0), dtype=self.mean.dtype, device=self.device)
                             for n in BLENDSHAPE_NAMES])
        flat = w @ self.blendshape_offsets.reshape(len(BLENDSHAPE_NAMES), -1)
        return flat.reshape(*w.shape[:-1], self.n_vertices, 3)

    def vertices(self, identity_coeffs=None, expression="neutral") -> torch.Tensor:
        """Vertices ``(..., V, 3)``: identity shape plus expression offsets (differentiable)."""
        return self.shape(identity_coeffs) + self.expression_offsets(expression)

    def mesh(self, identity_coeffs=None, expression="neutral") -> Mesh:
        """A :class:`Mesh` of one identity (``(K,)`` coefficients, None = mean) and expression."""
        v = self.vertices(identity_coeffs, expression)
        if v.ndim != 2:
            raise ValueError("mesh() makes one mesh: pass coefficients of shape (K,), not a batch")
        return Mesh(v, self.faces, self.uvs)

    # ---- landmarks and regions ---------------------------------------------------------------
    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:
        """The 68 iBUG landmarks ``(..., 68, 3)`` of vertices ``(..., V, 3)`` (any identity/expression)."""
        if vertices.shape[-2:] != (self.n_vertices, 3):
            raise ValueError(f"vertices must be (..., {self.n_vertices}, 3), got {tuple(vertices.shape)}")
        return vertices[..., self.landmark_ids.to(vertices.device), :]

    def vertex_regions(self) -> dict[str, torch.Tensor]:
        """Soft per-vertex region weights ``{name: (V,) in [0, 1]}``, see :data:`REGION_NAMES`."""
        return dict(self.regions)

    def display_colors(self, hair: bool = True) -> torch.Tensor:
        """``(V, 3)`` sRGB colours for a quick look (skin, lips, brows, eyes, hair), e.g.
        ``plot_head(mesh, colors=head.display_colors())``. Not reflectance - see lightstage."""
        return display_colors(self.regions, self.canonical, hair=hair)


# ------------------------------------------------------------------------------------------------
# Building, saving, loading
# ------------------------------------------------------------------------------------------------

def _derived(canonical: torch.Tensor):
    """Everything that follows from the template and the canonical head alone (fast)."""
    faces = template.template_faces()
    lms = landmark_indices(canonical)
    regions = vertex_regions(canonical)
    offsets = blendshapes(canonical, lms, regions)
    return faces, template.template_uvs(), template.template_weld(), lms, regions, offsets


def build_eduhead(n_heads: int = N_HEADS, seed: int = SEED, variance_kept: float = VARIANCE_KEPT,
                  device=None, verbose: bool = False) -> EduHead:
    """Build the model from scratch: sample ``n_heads`` heads with ``seed``, sculpt them on the
    template, fit the PCA basis keeping ``variance_kept`` of the variance. Deterministic.

    About 0.1-0.3 s per head on a laptop CPU (ray casting the SDF); the derived parts (landmarks,
    regions, blendshapes) take well under a second.
    """
    if n_heads < 2:
        raise ValueError(f"n_heads must be at least 2 to fit a basis, got {n_heads}")
    if not 0.0 < variance_kept <= 1.0:
        raise ValueError(f"variance_kept must be in (0, 1], got {variance_kept}")
    t0 = time.time()
    canonical = canonical_vertices(device)
    params = sample_head_params(torch.Generator().manual_seed(seed), n_heads)
    verts = sculpt_vertices(params, canonical)
    if verbose:
        print(f"sculpted {n_heads} heads in {time.time() - t0:.1f} s")
    x = verts.double().reshape(n_heads, -1)
    mean = x.mean(0)
    _, s, vt = torch.linalg.svd(x - mean, full_matrices=False)
    var = s * s / (n_heads - 1)
    frac = var.cumsum(0) / var.sum()
    k = int((frac < variance_kept - 1e-12).sum()) + 1
    k = min(k, n_heads - 1)
    comps = vt[:k]
    coeffs = ((x - mean) @ comps.T) / var[:k].sqrt()
    faces, uvs, weld, lms, regions, offsets = _derived(canonical.cpu())
    dev = verts.device
    head = EduHead(
        mean=mean.float().reshape(-1, 3), components=comps.float().reshape(k, -1, 3), variances=var[:k].float(),
        faces=faces.to(dev), uvs=uvs.to(dev), weld=weld.to(dev), landmark_ids=lms.to(dev),
        blendshape_offsets=offsets.to(dev), regions={n: r.to(dev) for n, r in regions.items()},
        population_params=torch.tensor([[getattr(p, n) for n in PARAM_NAMES] for p in params], dtype=torch.float32),
        population_coeffs=coeffs.float(), canonical=canonical.float(), total_variance=var.sum().float(),
    )
    if verbose:
        kept = 100 * float(frac[k - 1])
        print(f"K = {k} components keep {kept:.3f} % of the variance; total {time.time() - t0:.1f} s")
    return head


def save_eduhead(head: EduHead, path: str | Path = DATA_PATH, seed: int = SEED) -> Path:
    """Write the parts that need the population (mean, basis, variances, population, canonical head)
    as safetensors; components in float16 (error ~microns), the rest float32. Faces, UVs,
    landmarks, regions and blendshapes are re-derived on load from the code in a fraction of a second."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        "mean": head.mean.float().cpu().contiguous(),
        "components": head.components.half().cpu().contiguous(),
        "variances": head.variances.float().cpu().contiguous(),
        "population_params": head.population_params.float().cpu().contiguous(),
        "population_coeffs": head.population_coeffs.float().cpu().contiguous(),
        "canonical": head.canonical.float().cpu().contiguous(),
        "total_variance": head.total_variance.float().cpu().reshape(1),
    }
    meta = {"model": "EduHead", "version": MODEL_VERSION, "seed": str(seed),
            "n_heads": str(int(head.population_params.shape[0])),
            "grid": f"{template.GRID_ROWS}x{template.GRID_COLS}", "params": ",".join(PARAM_NAMES)}
    from avatarme_edu.maps_io import save_tensors  # atomic, and the same bytes in every process

    return save_tensors(path, tensors, metadata=meta)


def read_eduhead(path: str | Path = DATA_PATH, device=None) -> EduHead:
    """Load a model written by :func:`save_eduhead` (safetensors, never pickle)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no EduHead model at {path}; "
                                "build it with `python -m avatarme_edu.geometry.head --build`")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        t = {k: f.get_tensor(k) for k in f.keys()}
    grid = f"{template.GRID_ROWS}x{template.GRID_COLS}"
    if meta.get("grid") != grid or meta.get("params") != ",".join(PARAM_NAMES):
        raise ValueError(f"{path} was built for another template ({meta.get('grid')}) or parameter set; "
                         "rebuild it with `python -m avatarme_edu.geometry.head --build`")
    canonical = t["canonical"]
    faces, uvs, weld, lms, regions, offsets = _derived(canonical)
    head = EduHead(mean=t["mean"], components=t["components"].float(), variances=t["variances"],
                   faces=faces, uvs=uvs, weld=weld, landmark_ids=lms, blendshape_offsets=offsets, regions=regions,
                   population_params=t["population_params"], population_coeffs=t["population_coeffs"],
                   canonical=canonical, total_variance=t["total_variance"][0])
    return head.to(device) if device is not None else head


_CACHE: dict[str, EduHead] = {}


def load_eduhead(device=None) -> EduHead:
    """The stored EduHead on ``device`` (default cpu), cached. Builds it in memory (about a
    minute, with a warning) when the data file is missing."""
    key = str(torch.device(device) if device is not None else torch.device("cpu"))
    if key not in _CACHE:
        if "cpu" in _CACHE:
            _CACHE[key] = _CACHE["cpu"].to(key)
        else:
            try:
                base = read_eduhead(DATA_PATH)
            except FileNotFoundError:
                warnings.warn(f"{DATA_PATH} is missing: building EduHead in memory (about a minute)", stacklevel=2)
                base = build_eduhead()
            _CACHE["cpu"] = base
            _CACHE[key] = base.to(key)
    return _CACHE[key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avatarme_edu.geometry.head",
                                     description="Build (and store) the EduHead model deterministically.")
    parser.add_argument("--build", action="store_true", help="build the model and write it")
    parser.add_argument("--n-heads", type=int, default=N_HEADS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", default=str(DATA_PATH))
    args = parser.parse_args(argv)
    if not args.build:
        parser.print_help()
        return 0
    head = build_eduhead(args.n_heads, args.seed, verbose=True)
    path = save_eduhead(head, args.out, seed=args.seed)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): V = {head.n_vertices}, K = {head.n_identity}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
