"""Fitting a model's sampling prior (:mod:`pipeline.latent.prior`) to its encoded training faces.

The codes are the encoder's W+ of training photos (never the held-out ones); they are reduced to
their principal subspace (at 256 dimensions it keeps all but a ten-thousandth of their variance)
and a Gaussian mixture with one shared covariance is fitted there: a covariance per component
would need far more faces than a few thousand in 256 dimensions.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError
from ..latent.prior import MixturePrior
from ..models.encoder import Encoder
from ..models.render import from_uint8

FACES = 4000  # training faces encoded for the fit
# At most; a component per FACES_PER_COMPONENT faces (:func:`components_for`). On utkface-128
# (4,000 faces, KID of 2,000 samples against held-out faces, two draws): 16 components 220/222,
# 64 218/227, 256 211/241, 500 195/185, 1000 166-173/173-176; 1000 fitted to 8,000 faces 198/247.
# The shared covariance shrinks as components are added, yet samples stay new faces: their
# identity distance to the nearest of the 4,000 faces as the generator draws them is a median 0.454,
# as far as held-out people's own drawings are (0.447).
COMPONENTS = 1000
FACES_PER_COMPONENT = 4  # fewer faces than this per component are too few to fit it
DIMS = 256
REGULARISATION = 1e-3  # added to the covariance's diagonal (codes' variance is ~1-100 per axis)


@torch.no_grad()
def encode_wplus(encoder: Encoder, faces: np.ndarray, batch: int = 200) -> np.ndarray:
    """(N, n_latent, style_dim) encoder codes of uint8 faces (N, res, res, 3)."""
    return torch.cat([encoder.wplus(from_uint8(np.asarray(faces[i : i + batch]))) for i in range(0, len(faces), batch)]).numpy()


def fit_prior(codes: np.ndarray, components: int | None = None, dims: int = DIMS, seed: int = 0) -> MixturePrior:
    """A :class:`MixturePrior` fitted to W+ ``codes`` (N, n_latent, style_dim); by default with
    :func:`components_for` their number of components."""
    components = components or components_for(len(codes))
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    n, n_latent, style_dim = codes.shape
    dims = min(dims, n - 1, n_latent * style_dim)
    if n < max(FACES_PER_COMPONENT * components, 10):
        raise UserError(f"{n} faces are too few to fit a prior of {components} components")
    flat = codes.reshape(n, -1).astype(np.float64)
    pca = PCA(dims, random_state=seed).fit(flat)
    reduced = pca.transform(flat)
    mixture = GaussianMixture(components, covariance_type="tied", reg_covar=REGULARISATION,
                              max_iter=500, random_state=seed).fit(reduced)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    info = {"faces": n, "components": components, "dims": dims, "seed": seed,
            "variance_kept": round(float(pca.explained_variance_ratio_.sum()), 5)}  # fmt: skip
    return MixturePrior(t(pca.mean_), t(pca.components_), t(mixture.weights_), t(mixture.means_),
                        t(np.linalg.cholesky(mixture.covariances_)), n_latent, style_dim, info)  # fmt: skip


def components_for(faces: int) -> int:
    """Mixture components for a fit to ``faces`` encoded faces: :data:`COMPONENTS`, fewer for few faces."""
    return min(COMPONENTS, max(1, faces // FACES_PER_COMPONENT))


def chosen_faces(count: int, n: int = FACES, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` of ``count`` faces drawn at random (all of them when there are fewer)."""
    return np.sort(np.random.default_rng(seed).choice(count, min(n, count), replace=False))


def fit_to_faces(encoder: Encoder, faces: np.ndarray, components: int | None = None, seed: int = 0) -> MixturePrior:
    """A prior fitted to the encoded W+ of ``faces`` (uint8, at the model's resolution)."""
    was_training = encoder.training
    try:
        return fit_prior(encode_wplus(encoder.eval(), np.asarray(faces)), components, seed=seed)
    finally:
        encoder.train(was_training)
