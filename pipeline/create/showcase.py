"""Showcase exports for quick demos: an animated sweep along one or more directions (GIF and
MP4), a before/after side by side, and a contact sheet of a face across several edits.

Faces are enlarged (Lanczos) to a size people can see; every file carries the provenance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .. import provenance
from ..errors import UserError
from ..faces.images import save_image
from ..latent.directions import Direction
from ..latent.edit import apply_edits
from ..models.generator import Generator
from ..models.render import BATCH, render

SWEEP = (-2.0, 2.0)  # standard deviations
FRAMES = 24
FPS = 12
SHOW_SIZE = 256  # px of a face in the GIF and MP4
SHEET_SIZE = 96  # px of a face on the contact sheet
SHEET_STRENGTHS = (-2.0, -1.0, 0.0, 1.0, 2.0)
MAX_FRAMES = 240


def enlarge(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))


def sweep_codes(wplus: torch.Tensor, directions: Mapping[str, Direction], names: Sequence[str],
                span: tuple[float, float] = SWEEP, frames: int = FRAMES, bounce: bool = True) -> torch.Tensor:  # fmt: skip
    """(frames, n_latent, dim): ``wplus`` moved from ``span[0]`` to ``span[1]`` standard deviations along
    every named direction at once, and back again when ``bounce`` (a loop that does not jump)."""
    if not names:
        raise UserError("name at least one direction to sweep along")
    if not 2 <= int(frames) <= MAX_FRAMES:
        raise UserError(f"a sweep has between 2 and {MAX_FRAMES} frames, not {frames}")
    n_out = int(frames) // 2 + 1 if bounce else int(frames)
    strengths = np.linspace(span[0], span[1], n_out)
    if bounce:
        strengths = np.concatenate([strengths, strengths[-2:0:-1]])
    return torch.cat([apply_edits(wplus, directions, {n: float(s) for n in names}) for s in strengths])


def render_codes(G: Generator, codes: torch.Tensor, noise: list[torch.Tensor] | None = None) -> np.ndarray:
    """(n, res, res, 3) uint8 faces of W+ ``codes``, with the face's own noise maps when it has them
    (then one code at a time, as the face was rendered when it was found)."""
    return render(G, codes, noise, batch=BATCH if noise is None else 1)


def sweep_frames(G: Generator, wplus: torch.Tensor, directions: Mapping[str, Direction], names: Sequence[str],
                 span: tuple[float, float] = SWEEP, frames: int = FRAMES, size: int = SHOW_SIZE,
                 noise: list[torch.Tensor] | None = None) -> np.ndarray:  # fmt: skip
    """(T, size, size, 3) uint8 frames of the sweep."""
    faces = render_codes(G, sweep_codes(wplus, directions, names, span, frames), noise)
    return np.stack([enlarge(f, size) for f in faces])


def write_gif(frames: np.ndarray, path: str | Path, fps: int = FPS, model: str | None = None) -> Path:
    """A looping GIF whose comment says it is AI-edited."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(provenance.maybe_mark(f)) for f in frames]
    try:
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                       optimize=False, **provenance.save_options(path, model))  # fmt: skip
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc}") from None
    return path


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = FPS, model: str | None = None) -> Path:
    """An H.264 MP4 (with a silent sound track) tagged as AI-edited."""
    from ..talk.video import write_video

    sample_rate = 16000
    silence = np.zeros(int(len(frames) / fps * sample_rate) + 1, np.float32)
    return write_video(frames, silence, sample_rate, path, fps=fps, metadata={"model": model} if model else None)


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def labelled(image: np.ndarray, text: str, size: int) -> np.ndarray:
    """The face enlarged to ``size`` with a caption strip under it."""
    face = Image.fromarray(enlarge(image, size))
    strip = max(14, size // 8)
    canvas = Image.new("RGB", (size, size + strip), (255, 255, 255))
    canvas.paste(face, (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = _font(max(10, strip - 4))
    width = draw.textlength(text, font=font)
    draw.text(((size - width) / 2, size + 1), text, fill=(30, 30, 30), font=font)
    return np.asarray(canvas)


def side_by_side(before: np.ndarray, after: np.ndarray, captions: tuple[str, str] = ("before", "after"),
                 size: int = SHOW_SIZE) -> np.ndarray:  # fmt: skip
    """Before and after, captioned, next to each other."""
    gap = np.full((size + max(14, size // 8), max(4, size // 32), 3), 255, np.uint8)
    return np.hstack([labelled(before, captions[0], size), gap, labelled(after, captions[1], size)])


def contact_sheet(G: Generator, wplus: torch.Tensor, directions: Mapping[str, Direction], names: Sequence[str],
                  strengths: Sequence[float] = SHEET_STRENGTHS, size: int = SHEET_SIZE,
                  noise: list[torch.Tensor] | None = None) -> np.ndarray:  # fmt: skip
    """One row per direction, one column per strength, each face captioned ``name +1``."""
    if not names:
        raise UserError("name at least one direction for the contact sheet")
    codes = torch.cat([apply_edits(wplus, directions, {n: float(s)}) for n in names for s in strengths])
    faces = render_codes(G, codes, noise)
    tiles = [labelled(f, f"{n} {s:+g}", size) for f, (n, s) in zip(faces, [(n, s) for n in names for s in strengths])]
    pad = 4
    th, tw = tiles[0].shape[:2]
    cols = len(strengths)
    sheet = np.full((len(names) * (th + pad) + pad, cols * (tw + pad) + pad, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[pad + r * (th + pad) : pad + r * (th + pad) + th, pad + c * (tw + pad) : pad + c * (tw + pad) + tw] = tile
    return sheet


def export_showcase(G: Generator, wplus: torch.Tensor, directions: Mapping[str, Direction], out: str | Path,
                    sweep: Sequence[str] = ("age",), span: tuple[float, float] = SWEEP, frames: int = FRAMES,
                    fps: int = FPS, sheet: Sequence[str] = (), after: Mapping[str, float] | None = None,
                    model: str | None = None, noise: list[torch.Tensor] | None = None) -> dict[str, Path]:  # fmt: skip
    """``sweep.gif``, ``sweep.mp4``, ``before_after.png`` (default: the sweep's end) and ``sheet.png``
    (default rows: the first four directions) of the face ``wplus`` in the folder ``out``."""
    sheet = list(sheet) or list(directions)[:4]
    after = dict(after or {}) or {n: span[1] for n in sweep}
    for name in [*sweep, *sheet, *after]:
        if name not in directions:
            raise UserError(f"unknown direction {name!r}; this model has {', '.join(directions) or 'none'}")
    out = Path(out)
    clip = sweep_frames(G, wplus, directions, sweep, span, frames, noise=noise)
    before, edited = render_codes(G, torch.cat([wplus, apply_edits(wplus, directions, after)]), noise)
    caption = ", ".join(f"{n} {s:+g}" for n, s in after.items())
    return {
        "gif": write_gif(clip, out / "sweep.gif", fps, model),
        "mp4": write_mp4(clip, out / "sweep.mp4", fps, model),
        "before_after": save_image(side_by_side(before, edited, ("before", caption)), out / "before_after.png", model=model),
        "sheet": save_image(contact_sheet(G, wplus, directions, sheet, noise=noise), out / "sheet.png", model=model),
    }
