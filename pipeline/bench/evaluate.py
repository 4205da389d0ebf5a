"""Quality of a generator (and its encoder) against held-out real faces.

Used by ``python -m pipeline bench generator`` and to compare training recipes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..latent.prior import MixturePrior, sample_wplus
from ..models.encoder import Encoder, resize
from ..models.generator import Generator
from ..models.perceptual import perceptual_distance, psnr
from ..models.render import from_uint8, render, to_uint8
from ..training.data import heldout_split, list_images, load_faces, utkface_label
from .metrics import count_faces, kid
from .realism import edited_codes, realism

COMPARED_AT = 64  # KID is also read with every image shrunk to this size (utkface-64's resolution)


@torch.no_grad()
def generate(G: Generator, n: int, truncation: float, seed: int = 0, prior: MixturePrior | None = None) -> np.ndarray:
    """``n`` random faces (fresh noise maps, as in training samples), from ``prior`` when given."""
    return render(G, sample_wplus(G, n, seed, truncation, prior), random_noise=True)


@torch.no_grad()
def embed(images: np.ndarray, batch: int = 200, shrink_to: int | None = None) -> np.ndarray:
    """SqueezeNet features (pooled last tap, inputs at 128 px) for KID; with ``shrink_to``, of the
    images first shrunk to that size (to compare models of different resolutions)."""
    net = perceptual_distance(calibrated=True, resize=128)
    return np.concatenate(
        [net.embed(net_input(images[i : i + batch], net, shrink_to)).numpy() for i in range(0, len(images), batch)]
    )


def net_input(images: np.ndarray, net, shrink_to: int | None = None) -> torch.Tensor:
    x = from_uint8(images)
    if shrink_to is not None:
        x = resize(x, shrink_to)
    return resize(x, net.resize)


@torch.no_grad()
def reconstruction(G: Generator, E: Encoder, faces: np.ndarray, batch: int = 50) -> dict[str, float]:
    lp_net = perceptual_distance(calibrated=True, resize=128)
    scores = {"psnr": [], "lpips": []}
    recons = []
    started = time.time()
    for i in range(0, len(faces), batch):
        real = from_uint8(faces[i : i + batch])
        recon = G.synthesis(E.wplus(real), randomize_noise=False)
        recons.append(to_uint8(recon))
        scores["psnr"].append(psnr(recon, real))
        scores["lpips"].append(lp_net(recon, real))
    result = {k: float(torch.cat(v).mean()) for k, v in scores.items()}
    result["encode_seconds_per_image"] = (time.time() - started) / len(faces)
    real_ids = identities(faces)
    recon_ids = identities(np.concatenate(recons))
    result["identity_distance"] = float(np.linalg.norm(real_ids - recon_ids, axis=1).mean())
    return result


def identities(images: np.ndarray) -> np.ndarray:
    """(N, 128) dlib identity descriptors of face crops."""
    from ..faces.attributes import analyze

    return np.stack([a.identity for a in analyze(images, identity=True)])


def mean_pairwise_distance(vectors: np.ndarray) -> float:
    d = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    return float(d[np.triu_indices(len(vectors), 1)].mean())


def attribute_stats(samples: np.ndarray, real: np.ndarray, real_names: list[str]) -> dict:
    """Age and gender of samples against the data (classifier on real faces, and the labels),
    and diversity: mean pairwise identity distance of samples vs real faces."""
    from ..faces.attributes import analyze

    out = {}
    for kind, images in (("samples", samples), ("real", real)):
        attrs = analyze(images, identity=True)
        age = np.array([a.age for a in attrs])
        out[kind] = {
            "age_mean": float(age.mean()), "age_std": float(age.std()),
            "female_share": float(np.mean([a.p_female > 0.5 for a in attrs])),
            "identity_pairwise_distance": mean_pairwise_distance(np.stack([a.identity for a in attrs])),
        }  # fmt: skip
    labels = [label for label in map(utkface_label, real_names) if label]
    if labels:
        ages, genders = np.array(labels).T
        out["labels"] = {"age_mean": float(ages.mean()), "age_std": float(ages.std()), "female_share": float(genders.mean())}
    return out


def evaluate(
    G: Generator,
    E: Encoder | None,
    data_dir: Path,
    n_kid: int = 2000,
    n_faces: int = 500,
    n_recon: int = 200,
    n_attributes: int = 200,
    cache_dir: Path | None = Path("runs/cache"),
    log=print,
    directions: dict | None = None,
    n_edit: int = 100,
    prior: MixturePrior | None = None,
) -> dict:
    """The module's numbers, and :mod:`pipeline.bench.realism`'s (with ``directions``: the edited codes' too).

    Samples come from the model's ``prior`` when it ships one; the generator's own Gaussian
    prior's KID is then measured beside it, in the same run."""
    files = list_images(data_dir)
    train_files, heldout = heldout_split(files)
    res = G.config.resolution
    held = load_faces(data_dir, heldout, res, cache_dir)
    rng = np.random.default_rng(0)
    # Held-out names are sorted, and UTKFace names start with the age: shuffle so that
    # every subset below spans all ages.
    order = rng.permutation(len(heldout))
    held, heldout = held[order], [heldout[i] for i in order]
    train_subset = sorted(rng.choice(len(train_files), min(n_kid, len(train_files)), replace=False))
    train_faces = load_faces(data_dir, [train_files[i] for i in train_subset], res, cache_dir)
    result: dict = {"resolution": res, "prior": f"mixture of {prior.components}" if prior else "gaussian"}

    samples = {t: generate(G, max(n_kid, n_faces), t, prior=prior) for t in (0.7, 1.0)}
    log("face detection ...")
    real_counts = count_faces(held[:n_faces])
    result["faces_one_real"] = float((real_counts == 1).mean())
    for t, imgs in samples.items():
        counts = count_faces(imgs[:n_faces])
        result[f"faces_one_trunc{t}"] = float((counts == 1).mean())
    log("KID ...")
    f_held = embed(held[:n_kid])
    result["kid_trunc1.0"] = kid(embed(samples[1.0][:n_kid]), f_held)
    # The same reading on a second draw of samples: its gap to the first is the noise of one
    # reading, and two checkpoints closer than that are not told apart.
    result["kid_trunc1.0_redrawn"] = kid(embed(generate(G, n_kid, 1.0, seed=1, prior=prior)), f_held)
    result["kid_trunc0.7"] = kid(embed(samples[0.7][:n_kid]), f_held)
    result["kid_real_floor"] = kid(embed(train_faces), f_held)
    if res > COMPARED_AT:  # both shrunk to the smaller model's resolution: comparable with it
        f_held_small = embed(held[:n_kid], shrink_to=COMPARED_AT)
        result[f"kid_trunc1.0_at{COMPARED_AT}"] = kid(embed(samples[1.0][:n_kid], shrink_to=COMPARED_AT), f_held_small)
    if prior is not None:
        for t in (0.7, 1.0):
            result[f"kid_gaussian_trunc{t}"] = kid(embed(generate(G, n_kid, t)), f_held)
    log("attributes and diversity ...")
    result["attributes"] = attribute_stats(samples[1.0][:n_attributes], held[:n_attributes], heldout[:n_attributes])
    log("realism ...")
    result["realism"] = realism(samples[1.0][:n_faces], held[:n_faces])
    if E is not None:
        log("reconstruction ...")
        result["reconstruction"] = reconstruction(G, E, held[:n_recon])
        if directions:
            log("edited codes ...")
            result["edited_codes"] = edited_codes(G, E, held[:n_edit], directions)
    return result
