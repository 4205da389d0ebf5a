"""Finding edit directions in a generator's latent space (run-time use: :mod:`pipeline.latent.directions`).

A direction is a unit vector in W, the W+ rows it acts on by default and its scale: the
standard deviation of the model's W along it, so that strength 1 moves a face by one
standard deviation whatever the model. They are found three ways (InterFaceGAN, the
labelled-photo route and SeFa):

- supervised: sample W, render, score the faces (:mod:`pipeline.faces.attributes`), fit a linear
  SVM per attribute on the confident extremes (the top and bottom fractions by score), in
  whitened coordinates, and take its normal mapped back to W; held-out accuracy on the
  extremes says how usable it is;
- per-layer analysis: the direction applied to the coarse / middle / fine W+ rows (and
  their contiguous unions) and the attribute change measured; the fewest rows that keep
  most of the change become the edit's default layers;
- real photos: held-in UTKFace faces encoded with the model's encoder, age and gender
  SVMs fitted on their codes with the true labels, compared (cosine) with the above;
- discovered: closed-form factorisation of the style-modulation weights (SeFa), each
  component named by the attributes it moves most.

Files are safetensors, one (style_dim,) tensor per direction, with JSON metadata:
``layers`` (name -> [first, end)), ``scales``, ``order``, ``directions`` (per-direction
details) and ``report`` (the whole search, weak fits included). Published files such as
the FFHQ InterFaceGAN/GANSpace set (``(1, dim)`` and ``(1, n_latent, dim)`` vectors,
``<name>_comp`` principal components with ``<name>_std``) load with the same reader.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..latent.directions import (
    Direction,
    layer_spans,
    sample_w,
)
from ..models.generator import Generator
from ..models.render import from_uint8, render

EXTREME_FRACTION = 0.2  # InterFaceGAN trains on the confident ends of the score distribution
VALIDATION_FRACTION = 0.25  # of the extremes, held out to measure accuracy
USABLE_ACCURACY = 0.75  # held-out accuracy below which a fit is reported but not shipped
LAYER_KEEP = 0.9  # default layers keep at least this share of the all-layer change
LAYER_PROBE = 2.0  # strength (standard deviations) of the per-layer and SeFa probes
SEFA_COMPONENTS = 6
# Listing order: the edits people reach for first fill the app's sliders first.
PREFERRED_ORDER = ("age", "gender", "smile", "happy", "mouth_open", "yaw", "pitch", "eyes_open",
                   "surprise", "sad", "neutral", "angry", "fear", "disgust")  # fmt: skip

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Progress:
    """``label 1200/6000 (20%), 35 s, ~140 s left`` on stderr, at most every few seconds."""

    def __init__(self, label: str, total: int, log: Log = _stderr, every: float = 10.0) -> None:
        self.label, self.total, self.log, self.every = label, total, log, every
        self.start = self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < self.every and done < self.total:
            return
        self.last = now
        spent = now - self.start
        left = spent / max(done, 1) * (self.total - done)
        self.log(
            f"{self.label} {done}/{self.total} ({100 * done // max(self.total, 1)}%), {spent:.0f} s, ~{left:.0f} s left"
        )


def score_images(images: np.ndarray | Sequence[np.ndarray], batch: int = 64, identity: bool = False,
                 progress: Progress | None = None) -> tuple[dict[str, np.ndarray], list]:  # fmt: skip
    """Scores of each face as arrays by name (``attributes.SCORE_NAMES``) and the attribute records."""
    from ..faces import attributes

    records = []
    for start in range(0, len(images), batch):
        records += attributes.analyze(images[start : start + batch], batch_size=batch, identity=identity)
        if progress:
            progress(len(records))
    flat = [attributes.scores(r) for r in records]
    return {name: np.array([f[name] for f in flat], dtype=np.float64) for name in attributes.SCORE_NAMES}, records


def render_and_score(G: Generator, wplus: torch.Tensor, label: str = "", log: Log | None = None,
                     batch: int = 64) -> dict[str, np.ndarray]:  # fmt: skip
    progress = Progress(label, len(wplus), log) if log else None
    scores: dict[str, list[np.ndarray]] = {}
    for chunk in wplus.split(batch):
        chunk_scores, _ = score_images(render(G, chunk, batch=batch), batch)
        for k, v in chunk_scores.items():
            scores.setdefault(k, []).append(v)
        if progress:
            progress(sum(len(v) for v in next(iter(scores.values()))))
    return {k: np.concatenate(v) for k, v in scores.items()}


# --------------------------------------------------------------------------- SVM fits


@dataclass
class Fit:
    """A linear classifier's unit normal (pointing to higher scores) and how well it separates."""

    normal: np.ndarray  # (dim,)
    accuracy: float  # on the held-out part of the extremes
    correlation: float  # of the projection with the score over all samples
    n_train: int
    n_val: int


def fit_direction(codes: np.ndarray, score: np.ndarray, fraction: float = EXTREME_FRACTION, seed: int = 0,
                  labels: np.ndarray | None = None) -> Fit:  # fmt: skip
    """Linear SVM separating the top ``fraction`` of ``score`` from the bottom one (or the given
    0/1 ``labels``), trained on part of them and scored on the rest.

    The SVM is fitted on whitened codes and its normal mapped back to W as a move: the way the
    codes shift when the score grows (about the difference of the two class means). In raw W
    coordinates the normal of an anisotropic W leans towards low-variance axes, where one
    standard deviation barely changes the face.
    """
    from sklearn.svm import LinearSVC

    codes = np.asarray(codes, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    if labels is None:
        order = np.argsort(score, kind="stable")
        k = int(len(order) * fraction)
        if k < 4:
            raise UserError(f"too few samples to fit a direction ({len(order)}); sample more")
        chosen = np.concatenate([order[:k], order[-k:]])
        target = np.concatenate([np.zeros(k), np.ones(k)])
    else:
        chosen = np.arange(len(codes))
        target = np.asarray(labels, dtype=np.float64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(chosen))
    n_val = max(2, int(len(perm) * VALIDATION_FRACTION))
    val, train = perm[:n_val], perm[n_val:]
    centre = codes.mean(0)
    whiten, colour = whitening(codes)
    x = (codes[chosen] - centre) @ whiten
    svm = LinearSVC(C=1.0, max_iter=20_000, dual="auto").fit(x[train], target[train])
    accuracy = float((svm.predict(x[val]) == target[val]).mean())
    move = svm.coef_[0] @ colour  # a step along the normal in whitened space, seen in W
    normal = move / np.linalg.norm(move)
    projection = (codes - centre) @ normal
    correlation = float(np.corrcoef(projection, score)[0, 1]) if score.std() > 0 else 0.0
    return Fit(normal, accuracy, correlation, len(train), n_val)


def whitening(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(whiten, colour)``: centred codes ``@ whiten`` have identity covariance, and ``@ colour``
    takes them back (``colour.T @ colour`` is the covariance)."""
    values, vectors = np.linalg.eigh(np.cov(codes, rowvar=False))
    root = np.sqrt(np.clip(values, values.max() * 1e-8, None))
    return vectors / root, root[:, None] * vectors.T


def cosine(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --------------------------------------------------------------------------- per-layer analysis


def span_effects(G: Generator, w: torch.Tensor, vector: torch.Tensor, scale: float, attribute: str,
                 spans: dict[str, tuple[int, int]]) -> dict[str, float]:  # fmt: skip
    """Change of ``attribute`` per standard deviation when ``vector`` moves only the rows of each span."""
    base = w.unsqueeze(1).repeat(1, G.n_latent, 1)
    step = LAYER_PROBE * scale * vector.float()
    batches = []
    for lo, hi in spans.values():
        for sign in (1.0, -1.0):
            moved = base.clone()
            moved[:, lo:hi] += sign * step
            batches.append(moved)
    scores = render_and_score(G, torch.cat(batches))[attribute].reshape(len(spans), 2, len(w))
    change = (scores[:, 0] - scores[:, 1]).mean(1) / (2 * LAYER_PROBE)
    return {name: float(c) for name, c in zip(spans, change)}


def choose_layers(effects: dict[str, float], spans: dict[str, tuple[int, int]], n_latent: int) -> tuple[int, int]:
    """The span with the fewest rows whose change keeps ``LAYER_KEEP`` of the all-layer change
    (all layers when the change is not there to keep)."""
    everything = max(spans, key=lambda k: spans[k][1] - spans[k][0])
    total = effects[everything]
    if total <= 0:
        return (0, n_latent)
    keeping = [k for k in spans if effects[k] >= LAYER_KEEP * total]
    best = min(keeping, key=lambda k: (spans[k][1] - spans[k][0], -effects[k]))
    return spans[best]


# --------------------------------------------------------------------------- SeFa


def sefa_components(
    G: Generator, k: int = SEFA_COMPONENTS, w: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, dim) unit directions that change the style-modulation outputs most, and their
    eigenvalues: the top eigenvectors of AᵀA with A the stacked (row-normalised) modulation
    weights of every synthesis layer (Shen & Zhou, closed-form factorisation).

    Given samples ``w`` of the model's W, the change is measured per standard deviation of W
    instead of per unit length (AᵀA v = λ C v, C the covariance of W): the units edits use.
    Where W is spread unevenly, plain SeFa favours directions along which faces hardly vary.
    """
    from ..models.generator import ModulatedConv2d

    weights = [m.modulation.weight.detach().double().cpu() * m.modulation.scale for m in G.modules()
               if isinstance(m, ModulatedConv2d)]  # fmt: skip
    a = torch.cat(weights)
    a = a / a.norm(dim=1, keepdim=True)
    gram = a.T @ a
    if w is None:
        values, vectors = torch.linalg.eigh(gram)
    else:
        spread, basis = torch.linalg.eigh(torch.cov(w.double().T))
        root = basis @ torch.diag(spread.clamp_min(1e-12).sqrt()) @ basis.T  # C^(1/2)
        values, vectors = torch.linalg.eigh(root @ gram @ root)
        vectors = root @ vectors
        vectors = vectors / vectors.norm(dim=0, keepdim=True)
    top = values.argsort(descending=True)[:k]
    return vectors[:, top].T.float().contiguous(), values[top].float()


# --------------------------------------------------------------------------- the search


@dataclass
class Search:
    """Settings of :func:`find_directions`."""

    n: int = 3000  # labelling is most of the cost: ~0.1 s a face on one core (accuracy: see DIRECTIONS.md)
    seed: int = 0
    n_layers: int = 16  # faces per span in the per-layer analysis
    n_discovered: int = 24  # faces per SeFa component when naming it
    n_real: int = 3000  # encoded training photos for the real-photo route
    batch: int = 64


def real_route(G: Generator, encoder, data_dir: Path, files: list[str], search: Search, log: Log) -> dict:
    """Age and gender SVMs on the encoder's codes of labelled photos (UTKFace ``age_gender_...`` names)."""
    from ..training.data import load_faces

    picked = [files[i] for i in np.linspace(0, len(files) - 1, min(search.n_real, len(files))).round().astype(int)]
    labelled = []
    for name in picked:
        parts = name.split("_")
        if len(parts) >= 3 and parts[0].isdigit() and parts[1] in ("0", "1"):
            labelled.append((name, int(parts[0]), int(parts[1])))
    if len(labelled) < 100:
        raise UserError(
            f"too few labelled photos in {data_dir} ({len(labelled)}): expected UTKFace names age_gender_race_*"
        )
    faces = load_faces(data_dir, [n for n, _, _ in labelled], G.config.resolution)
    log(f"real route: encoding {len(faces)} photos")
    codes = []
    with torch.no_grad():
        for start in range(0, len(faces), search.batch):
            images = from_uint8(np.asarray(faces[start : start + search.batch])).to(G.device)
            codes.append(encoder(images)[0].cpu())
    w = torch.cat(codes).numpy()
    age = np.array([a for _, a, _ in labelled], dtype=np.float64)
    female = np.array([g for _, _, g in labelled], dtype=np.float64)  # UTKFace: 0 male, 1 female
    return {
        "photos": len(labelled),
        "age": fit_direction(w, age, seed=search.seed),
        "gender": fit_direction(w, female, seed=search.seed, labels=female),
    }


def discovered_directions(G: Generator, w: torch.Tensor, sample: torch.Tensor, spread: dict[str, float],
                          log: Log = _stderr) -> dict[str, Direction]:  # fmt: skip
    """SeFa's components, each named after the attribute it moves most (in standard deviations of
    ``spread``) and pointed the way that attribute grows; ``sample`` are the W codes probed."""
    directions: dict[str, Direction] = {}
    components, eigenvalues = sefa_components(G, w=w)
    for i, (vector, value) in enumerate(zip(components, eigenvalues)):
        scale = float((w @ vector).std())
        base = sample.unsqueeze(1).repeat(1, G.n_latent, 1)
        step = LAYER_PROBE * scale * vector
        moved = render_and_score(G, torch.cat([base + step, base - step]))
        change = {k: float((v[: len(sample)] - v[len(sample) :]).mean() / (2 * LAYER_PROBE)) for k, v in moved.items()}
        standardised = {k: change[k] / spread[k] if spread.get(k, 0) > 0 else 0.0 for k in change}
        top = sorted(standardised, key=lambda k: -abs(standardised[k]))[:3]
        if standardised[top[0]] < 0:  # point it the way its main attribute grows
            vector, change, standardised = (
                -vector,
                {k: -v for k, v in change.items()},
                {k: -v for k, v in standardised.items()},
            )
        name = f"sefa{i}_{top[0]}"
        info = {"component": i, "eigenvalue": round(float(value), 4),
                "moves": {k: round(standardised[k], 3) for k in top},
                "change_per_sd": {k: round(change[k], 4) for k in top}}  # fmt: skip
        directions[name] = Direction(name, vector.clone(), (0, G.n_latent), scale, "discovered", info)
        log(f"{name}: moves {info['moves']} (attribute standard deviations per standard deviation)")
    return directions


def find_directions(G: Generator, search: Search | None = None, encoder=None, data_dir: Path | None = None,
                    train_files: list[str] | None = None, log: Log = _stderr,
                    label: Callable[[torch.Tensor], dict[str, np.ndarray]] | None = None) -> tuple[dict[str, Direction], dict]:  # fmt: skip
    """Directions for every attribute with a usable fit, then the discovered ones; and the report.
    ``label``: renders and scores the sampled W+ codes elsewhere (the Ray engine); the fits stay here."""
    from ..faces.attributes import SCORE_NAMES

    search = search or Search()
    started = time.monotonic()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = round(time.monotonic() - started - sum(timings.values()), 1)

    w = sample_w(G, search.n, search.seed)
    wplus = w.unsqueeze(1).repeat(1, G.n_latent, 1)
    scores = label(wplus) if label is not None else render_and_score(G, wplus, "label", log, search.batch)
    lap("label")
    spread = {k: float(v.std()) for k, v in scores.items()}
    fits = {name: fit_direction(w.numpy(), scores[name], seed=search.seed) for name in SCORE_NAMES}
    lap("fit")
    for name in SCORE_NAMES:
        f = fits[name]
        log(f"{name}: held-out accuracy {f.accuracy:.3f}, correlation {f.correlation:+.3f}")

    real = None
    if encoder is not None and data_dir is not None and train_files:
        real = real_route(G, encoder, data_dir, train_files, search, log)
        lap("real_route")

    probe = w[torch.randperm(len(w), generator=torch.Generator().manual_seed(search.seed + 1))[: search.n_layers]]
    spans = layer_spans(G.n_latent)
    usable = [n for n in PREFERRED_ORDER if n in fits and fits[n].accuracy >= USABLE_ACCURACY]
    directions: dict[str, Direction] = {}
    for name in usable:
        f = fits[name]
        vector = torch.from_numpy(f.normal).float()
        scale = float((w @ vector).std())
        log(f"layers of {name}")
        effects = span_effects(G, probe, vector, scale, name, spans)
        info = {"accuracy": round(f.accuracy, 4), "correlation": round(f.correlation, 4), "n_train": f.n_train,
                "n_val": f.n_val, "change_per_sd": {k: round(v, 4) for k, v in effects.items()},
                "score_sd": round(spread[name], 4)}  # fmt: skip
        if real is not None and name in ("age", "gender"):
            info["cosine_real"] = round(cosine(f.normal, real[name].normal), 4)
        directions[name] = Direction(name, vector, choose_layers(effects, spans, G.n_latent), scale, "attribute", info)
    lap("layers")

    directions.update(discovered_directions(G, w, probe[: search.n_discovered], spread, log))
    lap("discovered")

    report = {
        "n": search.n, "seed": search.seed, "extreme_fraction": EXTREME_FRACTION, "usable_accuracy": USABLE_ACCURACY,
        "score_sd": {k: round(v, 4) for k, v in spread.items()},
        "fits": {k: {"accuracy": round(f.accuracy, 4), "correlation": round(f.correlation, 4), "shipped": k in directions}
                 for k, f in fits.items()},
        "seconds": timings, "total_seconds": round(time.monotonic() - started, 1), "threads": torch.get_num_threads(),
    }  # fmt: skip
    if real is not None:
        report["real_route"] = {
            "photos": real["photos"],
            **{k: {"accuracy": round(real[k].accuracy, 4), "cosine_generated": round(cosine(real[k].normal, fits[k].normal), 4)}
               for k in ("age", "gender")},
        }  # fmt: skip
    return directions, report
