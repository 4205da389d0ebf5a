"""``bench creative``: one number per creative feature, on random faces of a model, and a
contact sheet of what each feature does (``bench/creative_sheet.png``).

- mixing: identity distance of the mix to each parent along the interpolation;
- expression transfer: how often the emotion classifier reads B's top emotion on the result
  (against A before the transfer), and the result's identity distance to A;
- edit to a target: share of targets reached within tolerance and the steps needed;
- localized edits: PSNR outside the region, restricted edit vs unrestricted edit;
- augmentation: variants per second and the share of edits read the requested way;
- showcase: seconds to export the GIF, MP4, before/after and contact sheet;
- batch: seconds per photo through align, encode, edit, paste back, with a bad file among them.
"""

from __future__ import annotations

import math
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from ..create.augment import label_agreement, make_variants
from ..create.showcase import export_showcase, labelled
from ..faces import attributes
from ..faces.images import save_image
from ..latent.directions import Direction, random_w
from ..latent.edit import apply_edits
from ..latent.mixing import interpolation_path
from ..latent.regions import blend, psnr_outside, region_mask
from ..latent.target_edit import edit_to_target
from ..models.encoder import Encoder
from ..models.generator import Generator
from ..models.render import render

AMOUNTS = (0.0, 0.25, 0.5, 0.75, 1.0)
# B's expression is pushed along one emotion direction (these, in turn) so that the pairs
# are not all smiles, as random faces of a UTKFace model mostly are.
PUSHED = ("neutral", "angry", "surprise", "sad", "fear", "happy")
PUSH = 3.0  # standard deviations
TARGETS = (("age", 20.0), ("age", 40.0), ("age", 60.0), ("happy", 0.9), ("happy", 0.1))
LOCAL = (("smile", 3.0, "mouth"), ("eyes_open", 3.0, "eyes"), ("age", 2.0, "hair"))
TILE = 96

Log = Callable[[str], None]


def _faces(G: Generator, seeds: range | list[int]) -> torch.Tensor:
    return torch.cat([random_w(G, s).cpu().unsqueeze(1).repeat(1, G.n_latent, 1) for s in seeds])


def _mean(values) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return round(float(np.mean(values)), 3) if values else float("nan")


def bench_mixing(G: Generator, pairs: int = 5) -> tuple[dict, list[np.ndarray]]:
    to_a, to_b, shown = {t: [] for t in AMOUNTS}, {t: [] for t in AMOUNTS}, []
    a_all, b_all = _faces(G, range(pairs)), _faces(G, range(100, 100 + pairs))
    for i in range(pairs):
        path = interpolation_path(a_all[i : i + 1], b_all[i : i + 1], AMOUNTS)
        images = render(G, path)
        found = attributes.analyze(list(images))
        for t, f in zip(AMOUNTS, found):
            to_a[t].append(attributes.identity_distance(f, found[0]))
            to_b[t].append(attributes.identity_distance(f, found[-1]))
        if i == 0:
            shown = [labelled(im, f"mix {t:g}", TILE) for t, im in zip(AMOUNTS, images)]
    result = {"pairs": pairs, "amounts": list(AMOUNTS),
              "identity_distance_to_a": [_mean(to_a[t]) for t in AMOUNTS],
              "identity_distance_to_b": [_mean(to_b[t]) for t in AMOUNTS]}  # fmt: skip
    return result, shown


def emotion_l1(f, g) -> float:
    """Sum of absolute differences of two faces' emotion probabilities (0: the same reading, 2: disjoint)."""
    return float(sum(abs(f.emotions[k] - g.emotions[k]) for k in g.emotions))


def bench_transfer(G: Generator, directions: Mapping[str, Direction], pairs: int = 10) -> tuple[dict, list[np.ndarray]]:
    from ..latent.expression import transfer_expression

    pushed = [n for n in PUSHED if n in directions]
    a_all, b_all = _faces(G, range(200, 200 + pairs)), _faces(G, range(300, 300 + pairs))
    before_agree, after_agree, to_a, b_to_a, emotion_gap, shown = [], [], [], [], [], []
    for i in range(pairs):
        a, b = a_all[i : i + 1], b_all[i : i + 1]
        if pushed:
            b = apply_edits(b, directions, {pushed[i % len(pushed)]: PUSH})
        out = transfer_expression(a, b, directions)
        images = render(G, torch.cat([a, b, out]))
        fa, fb, fr = attributes.analyze(list(images))
        top = lambda f: max(f.emotions, key=f.emotions.get)  # noqa: E731
        before_agree.append(top(fa) == top(fb))
        after_agree.append(top(fr) == top(fb))
        to_a.append(attributes.identity_distance(fr, fa))
        b_to_a.append(attributes.identity_distance(fb, fa))
        emotion_gap.append((emotion_l1(fa, fb), emotion_l1(fr, fb)))
        if i < 2:
            shown += [labelled(images[0], "A", TILE), labelled(images[1], f"B {top(fb)}", TILE),
                      labelled(images[2], f"A+B's: {top(fr)}", TILE)]  # fmt: skip
    result = {"pairs": pairs, "top_emotion_agreement_before": _mean(before_agree),
              "top_emotion_agreement": _mean(after_agree),
              "emotion_l1_to_b_before": _mean([g[0] for g in emotion_gap]),
              "emotion_l1_to_b_after": _mean([g[1] for g in emotion_gap]),
              "identity_distance_to_a": _mean(to_a), "identity_distance_b_to_a": _mean(b_to_a)}  # fmt: skip
    return result, shown


def bench_targets(G: Generator, directions: Mapping[str, Direction], n_faces: int, log: Log) -> tuple[dict, list[np.ndarray]]:
    faces = _faces(G, range(400, 400 + n_faces))
    targets = [(n, v) for n, v in TARGETS if n in directions]
    per_target: dict[str, list] = {f"{n}={v:g}": [] for n, v in targets}
    shown = []
    started = time.monotonic()
    for i in range(n_faces):
        for name, value in targets:
            r = edit_to_target(G, faces[i : i + 1], directions, name, value)
            why = "reached" if r.reached else "identity" if "identity" in r.message else "unreachable"
            per_target[f"{name}={value:g}"].append((r.reached, r.steps, why))
            if i == 0 and name == "age":
                if not shown:
                    shown.append(labelled(render(G, faces[:1])[0], f"start: {r.start_value:.0f}", TILE))
                shown.append(labelled(r.image, f"aim {value:g}: {r.value:.0f}{'' if r.reached else ' missed'}", TILE))
        log(f"targets: face {i + 1}/{n_faces}, {time.monotonic() - started:.0f} s")
    everything = [x for rows in per_target.values() for x in rows]
    reached = [x for x in everything if x[0]]
    result = {"faces": n_faces, "targets": [f"{n}={v:g}" for n, v in targets],
              "reached_share": _mean([x[0] for x in everything]),
              "mean_steps_when_reached": _mean([x[1] for x in reached]),
              "stopped_by_identity_share": _mean([x[2] == "identity" for x in everything]),
              "per_target": {k: {"reached_share": _mean([x[0] for x in rows]), "mean_steps": _mean([x[1] for x in rows])}
                             for k, rows in per_target.items()},
              "seconds_per_target": round((time.monotonic() - started) / max(1, len(everything)), 2)}  # fmt: skip
    return result, shown


def bench_localized(G: Generator, directions: Mapping[str, Direction], n_faces: int = 10) -> tuple[dict, list[np.ndarray]]:
    faces = _faces(G, range(500, 500 + n_faces))
    result, shown = {}, []
    for name, strength, region in LOCAL:
        if name not in directions:
            continue
        unrestricted_db, localized_db, kept = [], [], []
        for i in range(n_faces):
            before, after = render(G, torch.cat([faces[i : i + 1], apply_edits(faces[i : i + 1], directions, {name: strength})]))
            mask = region_mask(attributes.analyze([before], identity=False)[0].landmarks, before.shape[0], region)
            local = blend(before, after, mask)
            unrestricted_db.append(psnr_outside(before, after, mask))
            localized_db.append(psnr_outside(before, local, mask))
            change = np.abs(after.astype(float) - before).sum(2)
            kept.append(float((np.abs(local.astype(float) - before).sum(2)).sum() / max(change.sum(), 1e-9)))
            if i == 0 and region == "mouth":
                shown = [labelled(before, "before", TILE), labelled(after, f"{name} +{strength:g}", TILE),
                         labelled(local, f"only {region}", TILE),
                         labelled((np.repeat(mask[..., None], 3, 2) * 255).astype(np.uint8), "mask", TILE)]  # fmt: skip
        identical = all(v == float("inf") for v in localized_db)
        result[f"{name}+{strength:g} in {region}"] = {
            "psnr_outside_unrestricted_db": _mean(unrestricted_db),
            "psnr_outside_localized_db": "identical" if identical else _mean(localized_db),
            "share_of_change_kept": _mean(kept),
        }
    return {"faces": n_faces, "edits": result}, shown


def bench_augment(G: Generator, directions: Mapping[str, Direction], n: int = 48) -> tuple[dict, list[np.ndarray]]:
    face = _faces(G, [600])
    started = time.monotonic()
    variants, base = make_variants(G, face, directions, n, seed=0)
    seconds = time.monotonic() - started
    shown = [labelled(v.image, f"age {v.strengths.get('age', 0):+.1f}", TILE) for v in variants[:5]]
    return {"variants": n, "images_per_second": round(n / seconds, 2), "label_agreement": label_agreement(variants, base)}, shown


def bench_showcase(G: Generator, directions: Mapping[str, Direction], model: str) -> dict:
    face = _faces(G, [700])
    with tempfile.TemporaryDirectory(prefix="showcase-") as folder:
        started = time.monotonic()
        sweep = ["age"] if "age" in directions else list(directions)[:1]
        files = export_showcase(G, face, directions, folder, sweep, (-2.0, 2.0), 24, model=model)
        seconds = time.monotonic() - started
        sizes = {k: Path(v).stat().st_size for k, v in files.items()}
    return {"frames": 24, "seconds_to_export": round(seconds, 2), "bytes": sizes}


def bench_batch(G: Generator, encoder: Encoder | None, template: str, directions: Mapping[str, Direction],
                photos: list[Path], model: str) -> dict:  # fmt: skip
    from ..create.batch import Editor, run_batch

    if encoder is None or not photos or "age" not in directions:
        return {"skipped": "needs an encoder, photos and an age direction"}
    with tempfile.TemporaryDirectory(prefix="batch-") as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for p in photos:
            shutil.copy(p, folder / p.name)
        (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
        editor = Editor(G, encoder, template, directions, {"age": 2.0}, model)
        started = time.monotonic()
        rows = run_batch(folder, Path(tmp) / "out", editor, progress=False)
        seconds = time.monotonic() - started
    return {"files": len(rows), "ok": sum(r.status == "ok" for r in rows),
            "failed": {r.file: r.reason for r in rows if r.status == "failed"},
            "seconds_per_file": round(seconds / len(rows), 2)}  # fmt: skip


def title_tile(text: str, like: np.ndarray) -> np.ndarray:
    """A blank tile the size of ``like`` with ``text`` in it: the row's name."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = like.shape[:2]
    im = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=max(10, w // 7))
    lines = text.split("\n")
    for k, line in enumerate(lines):
        width = draw.textlength(line, font=font)
        draw.text(((w - width) / 2, h / 2 + (k - len(lines) / 2) * font.size * 1.2), line, fill=(0, 0, 0), font=font)
    return np.asarray(im)


def sheet_image(rows: list[tuple[str, list[np.ndarray]]]) -> np.ndarray:
    """Rows of captioned tiles, each row led by its title."""
    rows = [[title_tile(title, tiles[0]), *tiles] for title, tiles in rows if tiles]
    th, tw = rows[0][0].shape[:2]
    cols, pad = max(len(r) for r in rows), 4
    sheet = np.full((len(rows) * (th + pad) + pad, cols * (tw + pad) + pad, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            sheet[pad + r * (th + pad) : pad + r * (th + pad) + th, pad + c * (tw + pad) : pad + c * (tw + pad) + tw] = tile
    return sheet


def bench_creative(G: Generator, directions: Mapping[str, Direction], model: str, encoder: Encoder | None = None,
                   template: str = "unknown", photos: list[Path] | None = None, n_faces: int = 20,
                   sheet: Path | None = None, log: Log = print) -> dict:  # fmt: skip
    started = time.monotonic()
    timings = {}

    def lap(name: str) -> None:
        timings[name] = round(time.monotonic() - started - sum(timings.values()), 1)
        log(f"{name}: {timings[name]} s")

    mixing, mix_row = bench_mixing(G)
    lap("mixing")
    transfer, transfer_row = bench_transfer(G, directions)
    lap("transfer")
    targets, target_row = bench_targets(G, directions, n_faces, log)
    lap("targets")
    local, local_row = bench_localized(G, directions)
    lap("localized")
    augment, augment_row = bench_augment(G, directions)
    lap("augment")
    showcase = bench_showcase(G, directions, model)
    lap("showcase")
    batch = bench_batch(G, encoder, template, directions, photos or [], model)
    lap("batch")
    result = {
        "model": model,
        "numbers": {
            "mixing_identity_distance_to_a_at_0_0.25_0.5_0.75_1": mixing["identity_distance_to_a"],
            "transfer_top_emotion_agreement": transfer["top_emotion_agreement"],
            "target_reached_share": targets["reached_share"],
            "target_mean_steps": targets["mean_steps_when_reached"],
            "localized_psnr_outside_unrestricted_db": next(iter(local["edits"].values()), {}).get("psnr_outside_unrestricted_db"),
            "augment_images_per_second": augment["images_per_second"],
            "augment_label_agreement": augment["label_agreement"]["all"],
            "showcase_seconds_to_export": showcase["seconds_to_export"],
            "batch_seconds_per_file": batch.get("seconds_per_file"),
        },
        "mixing": mixing, "transfer": transfer, "targets": targets, "localized": local, "augment": augment,
        "showcase": showcase, "batch": batch,
        "seconds": timings, "threads": torch.get_num_threads(), "device": str(G.device), "cpu": platform.processor() or platform.machine(),
    }  # fmt: skip
    if sheet is not None:
        rows = [("mixing\nA -> B", mix_row), ("expression\ntransfer", transfer_row), ("edit to\ntarget age", target_row),
                ("localized\nedit", local_row), ("augment\nvariants", augment_row)]  # fmt: skip
        save_image(sheet_image(rows), sheet, model=model)
        result["sheet"] = str(sheet)
    return result
