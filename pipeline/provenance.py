"""Provenance: every image and video the studio writes says it was AI-edited, by which model and tool.

Images carry it as PNG text chunks (``Description``, ``Software``, ``AI-edited``), for
JPEG and WebP as EXIF ``ImageDescription`` and ``Software``, for GIF as its comment; videos as MP4 container tags
(``comment``, ``encoder_tool``, ``model``). A visible mark (small text in a corner) is
added to generated pixels when ``STUDIO_VISIBLE_MARK`` is set to 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

TOOL = "Face Studio (StyleGAN2 face editor)"
MARK_ENV = "STUDIO_VISIBLE_MARK"
MARK_TEXT = "AI-edited"
_EXIF_DESCRIPTION = 0x010E
_EXIF_SOFTWARE = 0x0131


def statement(model: str | None = None) -> str:
    """The sentence every output carries, e.g. 'AI-edited with Face Studio (...), model utkface-64'."""
    return f"AI-edited with {TOOL}, model {model or 'unspecified StyleGAN2'}"


def save_options(path: str | Path, model: str | None = None) -> dict:
    """Keyword arguments for ``PIL.Image.save`` that embed the provenance in ``path``'s format."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        info = PngInfo()
        for key, value in text_chunks(model).items():
            info.add_itxt(key, value)  # international text: model names may be any Unicode
        return {"pnginfo": info}
    if suffix in (".jpg", ".jpeg", ".webp", ".tif", ".tiff"):
        exif = Image.Exif()
        exif[_EXIF_DESCRIPTION] = statement(model)
        exif[_EXIF_SOFTWARE] = TOOL
        return {"exif": exif}
    if suffix == ".gif":
        return {"comment": statement(model).encode()}  # the GIF comment extension
    return {}  # BMP has no place for it; the visible mark is the option there


def text_chunks(model: str | None = None) -> dict[str, str]:
    """The PNG text chunks, as ``Image.info`` entries (what a web server's PNG writer copies over)."""
    chunks = {"Description": statement(model), "Software": TOOL, "AI-edited": "yes"}
    return {**chunks, "Model": model} if model else chunks


def tagged(image: np.ndarray, model: str | None = None) -> Image.Image:
    """``image`` as a PIL image carrying the provenance in ``info``, for writers that keep it (Gradio's)."""
    im = Image.fromarray(np.ascontiguousarray(image))
    im.info.update(text_chunks(model))
    return im


def read(path: str | Path) -> dict[str, str]:
    """The provenance an image file carries (empty when none): ``description`` and ``software``."""
    with Image.open(path) as im:
        text = getattr(im, "text", None) or {}
        if text.get("Description"):
            return {"description": text["Description"], "software": text.get("Software", "")}
        comment = im.info.get("comment")
        if comment:
            text = comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)
            return {"description": text, "software": TOOL if TOOL in text else ""}
        exif = im.getexif()
        if exif.get(_EXIF_DESCRIPTION):
            return {"description": str(exif[_EXIF_DESCRIPTION]), "software": str(exif.get(_EXIF_SOFTWARE, ""))}
    return {}


def video_tags(model: str | None = None) -> dict[str, str]:
    """MP4 container tags for a video made with ``model``."""
    tags = {"comment": statement(model), "encoder_tool": TOOL}
    if model:
        tags["model"] = model
    return tags


def mark_enabled() -> bool:
    return os.environ.get(MARK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def mark(image: np.ndarray) -> np.ndarray:
    """``image`` with a small 'AI-edited' label in its bottom-right corner (a copy)."""
    height, width = image.shape[:2]
    im = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=max(8, min(height, width) // 12))
    x0, y0, x1, y1 = draw.textbbox((0, 0), MARK_TEXT, font=font)
    pad = max(1, (y1 - y0) // 4)
    left, top = width - (x1 - x0) - 2 * pad, height - (y1 - y0) - 2 * pad
    draw.rectangle((left, top, width, height), fill=(0, 0, 0))
    draw.text((left + pad - x0, top + pad - y0), MARK_TEXT, fill=(255, 255, 255), font=font)
    return np.asarray(im)


def maybe_mark(image: np.ndarray) -> np.ndarray:
    """``image`` with the visible mark when ``STUDIO_VISIBLE_MARK`` is on, else unchanged."""
    return mark(image) if mark_enabled() else image
