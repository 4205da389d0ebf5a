"""``bench photo``: edits measured on the final image, at the photo's own resolution.

Each held-out photo goes through what the app does (find, align, encode, optimise); then a
zero edit, age +3 sd and smile +2 sd are rendered into the photo by
:func:`pipeline.faces.photo_render.render_on_photo` and, side by side, by the plain
paste-back of the generator's face. Measured on what the user gets:

- the zero edit's PSNR against the photo, whole image;
- sharpness: Laplacian variance of the face region, result / photo;
- the edit survives: the attribute change read on the photo-resolution face (age in years,
  smile as mouth width / eye distance) as a share of the change read on the generator's faces;
- no ghosting: the result's face shrunk to the generator's resolution against the generator's
  edited face (LPIPS), beside the same distance for the zero edit (the inversion's own error);
- no seam: the largest change (99th percentile, grey levels) in the outer ring of the square
  the generator covers, where the change must have faded out;
- speed: one edit for a 256-px face, and upload to the first edit at photo resolution.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .. import provenance
from ..faces.align import AlignedFace, apply
from ..faces.attributes import AGE_BINS, analyze, identity_distance
from ..faces.paste import paste_back, paste_mask
from ..faces.photo_render import face_side_in_photo, face_view, render_on_photo
from ..models.perceptual import perceptual_distance
from ..models.render import from_uint8

# Facial hair (face_geometry.facial_hair, 0..255) gained that reads as a drawn moustache or beard:
# about the gap between the median UTKFace man and woman (10 vs -3 levels).
MOUSTACHE_DRAWN = 15.0
EDITS = {"zero": {}, "age+3": {"age": 3.0}, "smile+2": {"smile": 2.0}}
READS = {"age+3": "age", "smile+2": "smile"}  # what each edit should change
SPEED_FACE = 256
AGE_CEILING_MARGIN = 5.0  # years below the age net's oldest class where a face can still read older
SEAM_RING = 0.03  # share of the aligned square's side: the ring inside its edge where seams are read
GOALS = {"zero_psnr_db": 38.0, "sharpness": 0.9, "kept_share": 0.8, "lpips_to_generator": 0.05,
         "seam_levels": 4.0, "edit_s_at_256": 0.5, "upload_to_first_edit_s": 3.0}  # fmt: skip

Log = Callable[[str], None]


def sharpness(image: np.ndarray, mask: np.ndarray) -> float:
    """Laplacian variance of the grey image inside ``mask``: how much fine detail there is."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(cv2.Laplacian(grey, cv2.CV_64F)[mask].var())


def seam_levels(photo: np.ndarray, result: np.ndarray, aligned: AlignedFace) -> float:
    """How much the edit still changes at the edge of the square the generator covers (99th
    percentile of the largest channel change, 0..255): anything there shows as a seam."""
    ys, xs = np.mgrid[0 : photo.shape[0], 0 : photo.shape[1]]
    side = aligned.size
    q = apply(np.linalg.inv(aligned.matrix_for(side, side)), np.stack([xs.ravel(), ys.ravel()], 1)).reshape(*xs.shape, 2)
    to_edge = np.minimum(np.minimum(q[..., 0], side - 1 - q[..., 0]), np.minimum(q[..., 1], side - 1 - q[..., 1]))
    ring = (to_edge >= 0) & (to_edge < SEAM_RING * side)
    change = np.abs(result.astype(np.int16) - photo.astype(np.int16)).max(2)
    return float(np.percentile(change[ring], 99)) if ring.any() else 0.0


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 images; capped at 100 dB for identical ones."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return min(100.0, 10 * np.log10(255**2 / max(mse, 1e-10)))


def resized(image: np.ndarray, size: int, resample=Image.Resampling.LANCZOS) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), resample))


def lpips(a: np.ndarray, b: np.ndarray) -> float:
    return float(perceptual_distance(True, 128)(from_uint8(a)[None], from_uint8(b)[None]))


def invert_photo(studio, path: Path | bytes, steps: int):
    """A session with the photo's first face aligned, encoded and (``steps`` > 0) optimised."""
    session = studio.new_session()
    studio.open_photo(session, path)
    studio.align(session, 0)
    studio.encode(session)
    if steps:
        studio.optimise(session, steps=steps)
    return session


def bench_one(studio, path: Path, steps: int) -> dict:
    session = invert_photo(studio, path, steps)
    photo, aligned, rec = session.photo, session.aligned, session.reconstruction
    mask = paste_mask(photo.shape[:2], aligned) > 0.5
    base = sharpness(photo, mask)
    photo_face = face_view(photo, aligned)
    side = photo_face.shape[0]
    row: dict = {"photo": path.name, "face_px": side}
    generated, faces = {}, {}
    for name, strengths in EDITS.items():
        edited = studio.edit(session, strengths).image if strengths else rec
        result = render_on_photo(photo, aligned, rec, edited)
        plain = paste_back(photo, aligned, edited)
        generated[name], faces[name] = edited, result.face
        row[name] = {
            "psnr_db": round(psnr_db(result.photo, photo), 2),
            "psnr_db_plain_paste": round(psnr_db(plain, photo), 2),
            "sharpness": round(sharpness(result.photo, mask) / base, 3),
            "sharpness_plain_paste": round(sharpness(plain, mask) / base, 3),
            "lpips_to_generator": round(lpips(resized(result.face, rec.shape[0]), edited), 4),
            "seam_levels": round(seam_levels(photo, result.photo, aligned), 1),
            "seam_levels_plain_paste": round(seam_levels(photo, plain, aligned), 1),
        }
    reads = [photo_face, *(faces[n] for n in READS), resized(rec, side, Image.Resampling.BICUBIC),
             *(resized(generated[n], side, Image.Resampling.BICUBIC) for n in READS)]  # fmt: skip
    attrs = analyze(reads)
    k = len(READS)
    photo_a, result_a, rec_a, gen_a = attrs[0], attrs[1 : 1 + k], attrs[1 + k], attrs[2 + k :]
    row["photo_age"] = round(photo_a.age, 1)
    for (name, attr), res, gen in zip(READS.items(), result_a, gen_a):
        got = getattr(res, attr) - getattr(photo_a, attr)
        want = getattr(gen, attr) - getattr(rec_a, attr)
        row[name].update({
            f"{attr}_change": round(got, 3), f"{attr}_change_generator": round(want, 3),
            "kept_share": round(got / want, 3) if abs(want) > 1e-6 else None,
            "identity_distance": round(identity_distance(res, photo_a), 3),
            # what the edit should leave alone, read on the same faces
            "female_change": round(res.p_female - photo_a.p_female, 3), "skin_change": round(res.skin - photo_a.skin, 2),
            # the same on the generator's own faces: whether a flip is the model's or the renderer's
            "female_change_generator": round(gen.p_female - rec_a.p_female, 3),
            "facial_hair_change": round(res.facial_hair - photo_a.facial_hair, 2),
            "moustache_on_woman": bool(photo_a.p_female > 0.5 and res.facial_hair - photo_a.facial_hair > MOUSTACHE_DRAWN),
        })  # fmt: skip
    return row


def summarise(rows: list[dict]) -> dict:
    """Medians over the photos, per edit; for the age edit also the shares the user cares about."""
    from ..faces.attributes import IDENTITY_SAME

    out = {}
    for name in EDITS:
        entries = [r[name] for r in rows]
        keys = [k for k, v in entries[0].items() if (isinstance(v, (int, float)) and not isinstance(v, bool)) or v is None]
        out[name] = {k: round(float(np.median([e[k] for e in entries if e[k] is not None])), 3) for k in keys}
    for name, attr in READS.items():
        # Per face, got / want is noisy where the generator's own change is small (a child aged
        # by 1.5 years reads 12x); pooled over the faces it is not.
        want = sum(r[name][f"{attr}_change_generator"] for r in rows)
        out[name]["kept_share_pooled"] = round(sum(r[name][f"{attr}_change"] for r in rows) / want, 3) if want else None
    ages = [r["age+3"] for r in rows]
    # The age net's oldest class is 80 years: a face read near it cannot be read older.
    readable = [r["age+3"]["age_change"] > 0 for r in rows if r["photo_age"] < AGE_BINS[-1] - AGE_CEILING_MARGIN]
    out["age+3"].update({
        "older_share": round(float(np.mean([e["age_change"] > 0 for e in ages])), 3),
        "older_share_below_ceiling": round(float(np.mean(readable)), 3) if readable else None,
        "gender_flipped": int(sum(abs(e["female_change"]) > 0.5 for e in ages)),
        "gender_flipped_generator": int(sum(abs(e["female_change_generator"]) > 0.5 for e in ages)),
        "moustache_on_women": int(sum(e["moustache_on_woman"] for e in ages)),
        "same_person_share": round(float(np.mean([e["identity_distance"] < IDENTITY_SAME for e in ages])), 3),
    })  # fmt: skip
    return out


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG", **provenance.save_options("photo.png"))
    return buf.getvalue()


def speed(studio, photo_path: Path, repeats: int = 5) -> dict:
    """Upload to the first edit at photo resolution; one edit for a 256-px face (median), the way
    the app's slider makes it: the face at the photo's resolution, then its scores (timed apart)."""
    start = time.perf_counter()
    session = invert_photo(studio, photo_path, steps=0)
    studio.edit(session, {"smile": 1.0}, scores=False)
    first = time.perf_counter() - start
    scale = SPEED_FACE / face_side_in_photo(session.aligned)
    height, width = session.photo.shape[:2]
    big = np.asarray(Image.fromarray(session.photo).resize((round(width * scale), round(height * scale)), Image.Resampling.BICUBIC))
    session = invert_photo(studio, png_bytes(big), steps=0)
    times, score_times, result = [], [], None
    for i in range(repeats):
        t0 = time.perf_counter()
        result = studio.edit(session, {"smile": 1.0 + 0.1 * i}, scores=False)
        t1 = time.perf_counter()
        studio.edit_scores(session)
        times.append(t1 - t0)
        score_times.append(time.perf_counter() - t1)
    return {"upload_to_first_edit_s": round(first, 3), "edit_s_at_256": round(float(np.median(times)), 3),
            "scores_s": round(float(np.median(score_times)), 3), "face_px": int(result.face.shape[0])}  # fmt: skip


def goals(summary: dict, timing: dict) -> dict:
    edits = [summary[n] for n in READS]
    measured = {
        "zero_psnr_db": summary["zero"]["psnr_db"],
        "sharpness": min(summary[n]["sharpness"] for n in EDITS),
        "kept_share": min(e["kept_share"] for e in edits),
        "lpips_to_generator": max(e["lpips_to_generator"] for e in edits),
        "seam_levels": max(e["seam_levels"] for e in edits),
        "edit_s_at_256": timing["edit_s_at_256"],
        "upload_to_first_edit_s": timing["upload_to_first_edit_s"],
    }
    at_most = {"lpips_to_generator", "seam_levels", "edit_s_at_256", "upload_to_first_edit_s"}
    return {k: {"value": v, "goal": GOALS[k], "met": bool(v <= GOALS[k] if k in at_most else v >= GOALS[k])}
            for k, v in measured.items()}  # fmt: skip


TARGET_AGE, TARGET_TOLERANCE = 60.0, 5.0


def target_age(studio, photos: list[Path], steps: int, log: Log = print) -> dict:
    """"Make this face 60": the age read on the photo-resolution result, and whether the person stays."""
    from ..faces.attributes import IDENTITY_SAME

    rows = []
    for path in photos:
        session = invert_photo(studio, path, steps)
        found, result = studio.edit_to_target(session, "age", TARGET_AGE, TARGET_TOLERANCE)
        before, after = analyze([face_view(session.photo, session.aligned), result.face])
        distance = identity_distance(after, before)
        rows.append({"photo": path.name, "age_before": round(before.age, 1), "age_after": round(after.age, 1),
                     "strength": round(found.strength, 2), "identity_distance": round(distance, 3),
                     "reached": bool(abs(after.age - TARGET_AGE) <= TARGET_TOLERANCE), "same_person": bool(distance < IDENTITY_SAME)})  # fmt: skip
        log(f"bench photo: age {TARGET_AGE:g} for {path.name}: {after.age:.1f}")
    both = [r["reached"] and r["same_person"] for r in rows]
    return {"target": TARGET_AGE, "tolerance": TARGET_TOLERANCE, "photos": len(rows),
            "reached_share": round(float(np.mean([r["reached"] for r in rows])), 3) if rows else None,
            "reached_and_same_person_share": round(float(np.mean(both)), 3) if rows else None, "per_photo": rows}  # fmt: skip


def bench_photo(studio, photos: list[Path], steps: int = 100, log: Log = print, young: list[Path] = ()) -> dict:
    started = time.monotonic()
    rows = []
    for i, path in enumerate(photos):
        rows.append(bench_one(studio, path, steps))
        log(f"bench photo: {i + 1}/{len(photos)} {path.name}")
    summary = summarise(rows)
    timing = speed(studio, photos[0])
    out = {"photos": len(rows), "optimise_steps": steps, "summary": summary, "speed": timing,
           "goals": goals(summary, timing), "per_photo": rows}  # fmt: skip
    if young:
        out["age_60"] = target_age(studio, list(young), steps, log)
    out["seconds"] = round(time.monotonic() - started, 1)
    return out
