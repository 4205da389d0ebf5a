"""Batch editing of a folder of photos: align -> encode -> edit -> paste back, per file.

Each photo's largest face is aligned with the model's template, encoded (and optionally
refined by a few optimisation steps), edited and pasted back into the photo. A bad file
(not an image, no face, too big) is reported and skipped, never the end of the run.
``report.csv`` in the output folder holds one row per photo (ok, or the reason it failed)
and is rewritten after every file, so that a stopped run resumes where it left off: photos
whose result is already there are not done again.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..faces.align import AlignedFace, align_face
from ..faces.detection import find_faces
from ..faces.images import load_image, save_image
from ..faces.photo_render import render_on_photo
from ..latent.directions import Direction
from ..latent.edit import apply_edits
from ..models.encoder import Encoder
from ..models.generator import Generator
from ..models.render import from_uint8, render_one

REPORT = "report.csv"
FACES = "faces"  # subfolder for the edited aligned faces


@dataclass
class FileReport:
    file: str
    status: str  # ok | failed | done before
    reason: str = ""
    output: str = ""
    faces: int = 0
    seconds: float = 0.0


@dataclass
class Editor:
    """What one photo needs: the model's networks, its alignment and the edit to make."""

    generator: Generator
    encoder: Encoder | None
    template: str
    directions: Mapping[str, Direction]
    strengths: Mapping[str, float]
    model: str = ""
    steps: int = 0  # optimisation steps after the encoder's guess (0: the encoder alone)


def encode_face(G: Generator, encoder: Encoder | None, aligned: np.ndarray,
                steps: int = 0) -> tuple[torch.Tensor, list[torch.Tensor] | None]:  # fmt: skip
    """W+ (1, n_latent, dim) of an aligned face at the model's resolution (the encoder's guess,
    refined by ``steps`` of optimisation), and the optimised noise if any."""
    if steps > 0:
        from ..latent.inversion import invert

        result = invert(G, aligned, encoder, steps=steps)
        return result.wplus.detach().cpu(), result.noise
    if encoder is None:
        raise UserError("the model has no encoder: give optimisation steps (--steps) to find each face's code")
    with torch.no_grad():
        return encoder.wplus(from_uint8(aligned)[None].to(G.device)).cpu(), None


def align_and_encode(G: Generator, encoder: Encoder | None, template: str, photo: np.ndarray,
                     steps: int = 0) -> tuple[AlignedFace, torch.Tensor, list[torch.Tensor] | None, int]:  # fmt: skip
    """The photo's largest face aligned, its code and noise, and how many faces the photo has."""
    faces = find_faces(photo)
    aligned = align_face(photo, faces[0], template, G.config.resolution)
    wplus, noise = encode_face(G, encoder, aligned.image, steps)
    return aligned, wplus, noise, len(faces)


def edit_photo(editor: Editor, photo: np.ndarray) -> tuple[np.ndarray, np.ndarray, AlignedFace, int]:
    """(the photo with its largest face edited, the edited aligned face, the alignment, faces found)."""
    G = editor.generator
    aligned, wplus, noise, n_faces = align_and_encode(G, editor.encoder, editor.template, photo, editor.steps)
    edited = apply_edits(wplus.to(G.device), editor.directions, editor.strengths)
    face = render_one(G, edited, noise)
    # The change from the unedited render to the edit, applied to the photo at its own resolution.
    return render_on_photo(photo, aligned, render_one(G, wplus.to(G.device), noise), face).photo, face, aligned, n_faces


def photos_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"not a folder: {folder}")
    # Every file: one that is not a photo gets a row saying so rather than being passed over in silence.
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def output_names(photos: list[Path]) -> dict[Path, str]:
    """``name.png`` per photo; photos sharing a stem (a.jpg, a.png) keep their extension in the name."""
    stems: dict[str, int] = {}
    for p in photos:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    return {p: f"{p.stem}.png" if stems[p.stem] == 1 else f"{p.stem}-{p.suffix.lstrip('.')}.png" for p in photos}


def read_report(path: Path) -> dict[str, FileReport]:
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    names = {f.name for f in fields(FileReport)}
    out = {}
    for row in rows:
        if names <= row.keys():
            out[row["file"]] = FileReport(row["file"], row["status"], row["reason"], row["output"], int(row["faces"] or 0),
                                          float(row["seconds"] or 0))  # fmt: skip
    return out


def write_report(path: Path, rows: list[FileReport]) -> None:
    """Written to a temporary file and renamed: an interrupted run never leaves half a report."""
    partial = path.with_suffix(".csv.partial")
    with partial.open("w", newline="") as f:
        writer = csv.DictWriter(f, [x.name for x in fields(FileReport)])
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    os.replace(partial, path)


def run_batch(folder: Path, out: Path, editor: Editor, progress: bool = True,
              on_file: Callable[[FileReport], None] | None = None) -> list[FileReport]:  # fmt: skip
    """Edit every photo in ``folder`` into ``out`` (see the module notes); the report rows, in file order."""
    from tqdm import tqdm

    if not editor.strengths or not any(editor.strengths.values()):
        raise UserError("give at least one non-zero edit, e.g. --edit age=+2")
    photos = photos_in(folder)
    if not photos:
        raise UserError(f"no photos in {folder}")
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / REPORT
    before = read_report(report_path)
    names = output_names(photos)
    rows: dict[str, FileReport] = {}
    current = {p.name for p in photos}
    for photo_path in tqdm(photos, desc="batch", unit="photo", disable=not progress):
        name = names[photo_path]
        previous = before.get(photo_path.name)
        if previous and previous.status in ("ok", "done before") and (out / name).is_file():
            row = FileReport(photo_path.name, "done before", "", name, previous.faces, 0.0)
        else:
            row = _one(photo_path, out, name, editor)
        rows[photo_path.name] = row
        # Rows of photos no longer in the folder are kept: the report stays a record of the run.
        write_report(report_path, [*rows.values(), *(r for k, r in before.items() if k not in current)])
        if on_file:
            on_file(row)
    return list(rows.values())


def _one(photo_path: Path, out: Path, name: str, editor: Editor) -> FileReport:
    started = time.monotonic()
    row = FileReport(photo_path.name, "failed")
    try:
        photo = load_image(photo_path)
        composite, face, _, n_faces = edit_photo(editor, photo)
        save_image(face, out / FACES / name, model=editor.model)
        save_image(composite, out / name, model=editor.model)
        row.status, row.output, row.faces = "ok", name, n_faces
    except UserError as exc:
        row.reason = str(exc)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - one bad file must not end the run; the report says what happened
        row.reason = f"{type(exc).__name__}: {str(exc)[:200]}"
    row.seconds = round(time.monotonic() - started, 2)
    return row
