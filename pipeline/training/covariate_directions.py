"""Edit directions that change only what they name: regressions of real faces' codes.

Directions fitted on one attribute at a time pick up whatever goes with it in the data: in
UTKFace older faces are more often male, darker-skinned and less often smiling, so an "age"
direction fitted alone draws moustaches, darkens skin and drops the smile. Here each
direction comes from one multi-output least-squares fit of the encoder's W of labelled
photos on the attribute *and its confounds*,

    W = b_attr * attr + sum_c b_c * confound_c + b_race . race + b_0,

so ``b_attr`` is how W moves with the attribute while the confounds stay put (the
generative direction of the conditional mean, which is what an edit should follow).
Age and gender use the photos' true labels, race enters as a covariate of every fit, skin
tone (cheek luminance located by landmarks) is measured, the rest (smile, mouth, eyes, pose,
the seven emotions) are read by the classifiers from the photos at their own resolution.
Strength 1 is one standard deviation of the codes along the direction, as elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import UserError
from ..faces.attributes import EMOTIONS, analyze, scores
from ..latent.directions import Direction
from ..models.render import from_uint8
from .data import load_faces

Log = Callable[[str], None]
GEOMETRY = ("smile", "mouth_open", "eyes_open", "yaw", "pitch")
# Held by every edit that does not name them. Facial hair is measured (leakage matrix) but not held:
# held in every fit, age +3 sd on held-out photos aged 9 years instead of 19, with darker skin.
BASE = ("age", "gender", "skin")
ADULT_AGES = (18, 80)  # ageing is fitted on adults: a child's growth is another change
MIN_AGE = 10  # the other fits leave out small children, whose faces the classifiers misread
# Fitted with an attribute x female term, and the slope among men kept. Encoded women drift towards
# men's codes as they age in UTKFace (and the gender net reads older women as men more often), so
# the slope pooled over both, or the women's own, aged women into men: on utkface-128, age +3 sd on
# 40 held-out photos flipped 6 of 20 women on its 81.6k refiner's codes (the women's slope 8, the
# men's 0), and 4 on its shipped refiner's (the men's 0).
MEN_SLOPE = ("age",)
RACES = 5  # UTKFace's race labels (0 White, 1 Black, 2 Asian, 3 Indian, 4 Other)


def held_attributes(name: str) -> tuple[str, ...]:
    """What an edit of ``name`` keeps: the covariates of its fit (an emotion may move the mouth)."""
    base = tuple(b for b in BASE if b != name)
    if name in EMOTIONS:
        return (*base, "eyes_open", "yaw", "pitch")
    return base + tuple(g for g in GEOMETRY if g != name)


def labelled_photos(files: list[str]) -> list[tuple[str, int, int, int]]:
    """(file, age, gender, race) of UTKFace ``age_gender_race_*`` names."""
    out = []
    for name in files:
        parts = name.split("_")
        if len(parts) >= 4 and parts[0].isdigit() and parts[1] in ("0", "1") and parts[2].isdigit():
            out.append((name, int(parts[0]), int(parts[1]), min(int(parts[2]), RACES - 1)))
    return out


def read_photos(data_dir: Path, names: list[str], log: Log, batch: int = 100) -> dict[str, np.ndarray]:
    """Attribute scores (and whether a face was found) of each photo at its own resolution."""
    columns: dict[str, list[float]] = {}
    for start in range(0, len(names), batch):
        images = []
        for name in names[start : start + batch]:
            with Image.open(data_dir / name) as im:
                images.append(np.asarray(im.convert("RGB")))
        for attrs in analyze(images, identity=False):
            for key, value in {**scores(attrs), "found": float(attrs.face_found)}.items():
                columns.setdefault(key, []).append(value)
        log(f"covariate directions: read {min(start + batch, len(names))}/{len(names)} photos")
    return {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}


@torch.no_grad()
def encode_photos(encoder, faces: np.ndarray, batch: int = 256) -> np.ndarray:
    return torch.cat([encoder(from_uint8(np.asarray(faces[i : i + batch])))[0] for i in range(0, len(faces), batch)]).numpy()


def fit_conditional(w: np.ndarray, target: np.ndarray, confounds: list[np.ndarray], race: np.ndarray,
                    interaction: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """The coefficient of ``target`` in the least-squares fit of ``w`` on target, confounds and race;
    with ``interaction`` (0 or 1 per photo), target x interaction is fitted beside it and the
    coefficient is the slope where ``interaction`` is 0."""
    race_columns = np.eye(RACES)[race][:, 1:]  # one-hot, the first race as the reference
    extra = [] if interaction is None else [target * interaction]
    design = np.column_stack([target, *extra, *confounds, race_columns, np.ones(len(target))])
    coef, *_ = np.linalg.lstsq(design, w, rcond=None)
    return coef[0]


def covariate_directions(
    encoder, data_dir: Path, files: list[str], n_latent: int, n: int = 5000, seed: int = 0, log: Log = print
) -> tuple[dict[str, Direction], dict]:
    """One direction per attribute, each fitted with the others it should keep as covariates."""
    started = time.monotonic()
    labelled = labelled_photos(files)
    if len(labelled) < 500:
        raise UserError(f"too few labelled photos in {data_dir} ({len(labelled)}): expected UTKFace names")
    rng = np.random.default_rng(seed)
    labelled = [labelled[i] for i in sorted(rng.choice(len(labelled), min(n, len(labelled)), replace=False))]
    names = [row[0] for row in labelled]
    w = encode_photos(encoder, load_faces(data_dir, names, encoder.config.resolution))
    log(f"covariate directions: encoded {len(w)} photos")
    read = read_photos(data_dir, names, log)
    columns = dict(read)
    columns["age"] = np.array([row[1] for row in labelled], dtype=np.float64)
    columns["gender"] = np.array([row[2] for row in labelled], dtype=np.float64)  # 1: female, as P(female)
    race = np.array([row[3] for row in labelled])
    found = read["found"] > 0.5
    # The unit of the leakage matrix: each attribute's spread over real faces.
    spread = {k: round(float(np.nanstd(v[found])), 4) for k, v in columns.items() if k != "found"}
    directions, report = {}, {"photos": len(w), "faces_found": int(found.sum()), "attribute_sd": spread, "fits": {}}
    for name in ("age", "gender", *GEOMETRY, *EMOTIONS):
        lo, hi = ADULT_AGES if name == "age" else (MIN_AGE, 200)
        rows = found & (columns["age"] >= lo) & (columns["age"] <= hi)
        held = held_attributes(name)
        men_slope = name in MEN_SLOPE
        by_sex = columns["gender"][rows] if men_slope else None
        coef = fit_conditional(w[rows], columns[name][rows], [columns[c][rows] for c in held], race[rows], by_sex)
        vector = coef / np.linalg.norm(coef)
        scale = float((w @ vector).std())
        corr = float(np.corrcoef(w[rows] @ vector, columns[name][rows])[0, 1])
        # The same fit without the covariates: what the attribute drags along in the data.
        alone = np.linalg.lstsq(np.column_stack([columns[name][rows], np.ones(rows.sum())]), w[rows], rcond=None)[0][0]
        alone = alone / np.linalg.norm(alone)
        info = {"method": "covariate regression" + (", men's slope" if men_slope else ""),
                "keeps": list(held), "photos": int(rows.sum()),
                "correlation": round(corr, 4), "alone_scale": round(float((w @ alone).std()), 5),
                "alone_cosine": round(float(alone @ vector), 4)}  # fmt: skip
        directions[name] = Direction(name, torch.from_numpy(vector).float(), (0, n_latent), scale, "attribute", info,
                                     torch.from_numpy(alone).float())  # fmt: skip
        report["fits"][name] = {"photos": int(rows.sum()), "correlation": round(corr, 4), "keeps": list(held),
                                "slope": "men" if men_slope else "all"}  # fmt: skip
        log(f"{name}: correlation {corr:+.3f} over {rows.sum()} photos, keeps {', '.join(held)}")
    report["seconds"] = round(time.monotonic() - started, 1)
    return directions, report


def search_with_covariates(G, encoder, data_dir: Path, files: list[str], n: int = 5000, n_probe: int = 64,
                           seed: int = 0, log: Log = print) -> tuple[dict[str, Direction], dict]:  # fmt: skip
    """The attribute directions by :func:`covariate_directions`, each on the rows that keep the
    person best (:func:`~pipeline.training.decorrelation.identity_rows`), those that still move what they
    keep on the generator's own faces corrected by the measured leakage
    (:func:`~pipeline.training.decorrelation.decorrelate`) and holding the face's colour
    (:func:`~pipeline.training.colour_hold.hold_colour`), then SeFa's discovered ones (named by
    what they move, in standard deviations over the real faces)."""
    from .colour_hold import fit_codes, hold_colour
    from .decorrelation import (
        FIT_FACES,
        FIT_SEED,
        ROW_FACES,
        decorrelate,
        identity_rows,
        keep_if_better,
        median_leak,
        photo_codes,
        random_faces,
    )
    from .directions import discovered_directions, sample_w

    started = time.monotonic()
    directions, report = covariate_directions(encoder, data_dir, files, G.n_latent, n, seed, log)
    chosen = np.random.default_rng(seed + 1).choice(len(files), ROW_FACES, replace=False)
    faces = load_faces(data_dir, [files[i] for i in sorted(chosen)], G.config.resolution)
    directions = identity_rows(G, directions, photo_codes(G, encoder, faces, log=log), log, report["attribute_sd"])
    report["rows"] = {k: list(d.layers) for k, d in directions.items()}
    table = random_faces(G, directions, FIT_FACES, FIT_SEED + seed, log, report["attribute_sd"])
    corrected = decorrelate(directions, table, held_attributes)
    changed = [k for k in corrected if corrected[k] is not directions[k]]
    after = random_faces(G, corrected, FIT_FACES, FIT_SEED + seed, log, report["attribute_sd"], changed) if changed else {}
    directions = keep_if_better(directions, corrected, table, after)
    report["decorrelated"] = {k: {"median_leak_before": d.info["median_leak_before"], "corrected_by": d.info["corrected_by"]}
                              for k, d in directions.items() if "corrected_by" in d.info}  # fmt: skip
    for name, fix in report["decorrelated"].items():
        fix["median_leak_after"] = round(median_leak(after, name), 3)
        log(f"{name}: median leakage {fix['median_leak_before']:.2f} -> {fix['median_leak_after']:.2f} sd, "
            f"corrected by {fix['corrected_by']}")
    report["corrections_not_kept"] = sorted(set(changed) - set(report["decorrelated"]))
    directions, report["colour_held"] = hold_colour(G, directions, fit_codes(G, encoder, data_dir, files, seed=seed), log)
    w = sample_w(G, max(n_probe, 1000), seed)
    directions.update(discovered_directions(G, w, w[:n_probe], report["attribute_sd"], log))
    report["method"] = "covariates"
    report["seconds"] = round(time.monotonic() - started, 1)  # the whole search, rows and corrections included
    return directions, report
