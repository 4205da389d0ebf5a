"""The leakage matrix: what each edit direction moves besides what it names.

For every direction at -2 and +2 standard deviations, the change of every measured attribute
(age, gender, smile, mouth, eyes, pose, the seven emotions, skin tone, facial hair) in that attribute's
standard deviations (over the unedited faces of the same set), and the identity distance to
the unedited face. The row is half the (+2) - (-2) difference, median over faces: the effect
of a +2 sd edit, robust to a face that fails to read.

Two sets: random faces (the generator's own renders) and held-out photos edited at the
photo's resolution through :func:`~pipeline.faces.photo_render.render_on_photo` and read from
the photo-resolution face, as the user sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .. import provenance
from ..faces.photo_render import face_view, render_on_photo
from ..latent.directions import Direction
from ..training import decorrelation
from ..training.decorrelation import COLUMNS, LEAK_GOAL, STRENGTH, attribute_names, effects, matrix, median_leak
from .photo import invert_photo

Log = Callable[[str], None]


def summary(table: dict) -> dict:
    """Per direction: its own effect and its median / largest off-diagonal leakage."""
    out = {}
    for name, row in table.items():
        worst = max((c for c in row if c not in (name, "identity")), key=lambda c: abs(row[c]))
        out[name] = {"effect_sd": row.get(name), "median_leak_sd": round(median_leak(table, name), 3),
                     "largest_leak": f"{worst} {row[worst]:+.2f}", "identity": row["identity"]}  # fmt: skip
    return out


def photos(
    studio, model, paths: Sequence[Path], steps: int, log: Log, spread: Mapping[str, float] | None = None
) -> dict:
    """The matrix on photos inverted by ``studio``, edited with ``model``'s directions."""
    names = attribute_names(model.directions)
    per_face = []
    for i, path in enumerate(paths):
        session = invert_photo(studio, path, steps)
        code = session.latent.wplus(model.generator.n_latent)
        to_gen = decorrelation.code_editor(session.tuned or model.generator, code, model.directions, session.latent.noise)
        photo, aligned, rec = session.photo, session.aligned, session.reconstruction

        def editor(strengths: Mapping[str, float]) -> np.ndarray:
            return render_on_photo(photo, aligned, rec, to_gen(strengths)).face  # noqa: B023

        per_face.append(effects(face_view(photo, aligned), editor, names))
        log(f"leakage: photo {i + 1}/{len(paths)} {path.name}")
    return matrix(per_face, names, spread)


def heatmap(table: dict, path: Path, cell: int = 34) -> Path:
    """The matrix as a picture: red grows, blue shrinks, the diagonal framed."""
    rows, cols = list(table), list(COLUMNS)
    left, top = 90, 70
    im = Image.new("RGB", (left + cell * len(cols) + 4, top + cell * len(rows) + 4), "white")
    draw = ImageDraw.Draw(im)
    for j, c in enumerate(cols):
        draw.text((left + j * cell + 3, top - 14 - (j % 3) * 16), c[:9], fill="black")
    for i, r in enumerate(rows):
        draw.text((4, top + i * cell + cell // 3), r[:12], fill="black")
        for j, c in enumerate(cols):
            v = table[r][c]
            t = float(np.clip(abs(v) / (1.0 if c != "identity" else 0.6), 0, 1))
            colour = (
                (255, int(255 * (1 - t)), int(255 * (1 - t)))
                if v >= 0
                else (int(255 * (1 - t)), int(255 * (1 - t)), 255)
            )
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 1, top + (i + 1) * cell - 1)
            draw.rectangle(box, fill=colour, outline="black" if c == r else None, width=2)
            draw.text((box[0] + 2, box[1] + cell // 3), f"{v:+.1f}"[:5], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **provenance.save_options(path))
    return path


def markdown(table: dict) -> str:
    cols = list(COLUMNS)
    lines = ["| direction | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for r, row in table.items():
        cells = [f"**{row[c]:+.2f}**" if c == r else f"{row[c]:+.2f}" for c in cols]
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bench_leakage(model, directions: Mapping[str, Direction], photo_paths: Sequence[Path], n_random: int,
                  folder: Path, tag: str = "", steps: int = 100, spread: Mapping[str, float] | None = None,
                  log: Log = print) -> dict:  # fmt: skip
    """Both matrices with their pictures (``folder``/leakage_{photos,random}``tag``.png) and per-direction summaries;
    ``spread``: each attribute's standard deviation over real faces (the search's), the unit."""
    from types import SimpleNamespace

    from ..studio import Studio

    model = SimpleNamespace(name=model.name, generator=model.generator, directions=dict(directions))
    out: dict = {"strength": STRENGTH, "goal_median_leak_sd": LEAK_GOAL}
    if photo_paths:
        out["photos"] = {
            "faces": len(photo_paths),
            "matrix": photos(Studio(model.name), model, photo_paths, steps, log, spread),
        }
    if n_random:
        out["random"] = {"faces": n_random, "matrix": decorrelation.random_faces(model.generator, model.directions, n_random, 0, log, spread)}
    for part in ("photos", "random"):
        if part in out:
            out[part]["picture"] = str(heatmap(out[part]["matrix"], folder / f"leakage_{part}{tag}.png"))
            out[part]["summary"] = summary(out[part]["matrix"])
    return out
