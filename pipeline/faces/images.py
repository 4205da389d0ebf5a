"""Image intake: any common upload -> RGB uint8 array, with limits and one-line errors.

Uploads come from strangers: decoding is bounded (bytes, pixels, decompression bombs)
and every failure is a :class:`UserError`, never a traceback.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from .. import limits, provenance
from ..errors import UserError

MIN_SIDE = 32
# MPO is how many phones store JPEGs (a JPEG with extra frames).
FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "TIFF": "TIFF", "GIF": "GIF"}
SUPPORTED = "JPEG, PNG, WebP, BMP, TIFF or GIF"
_SRGB = ImageCms.createProfile("sRGB")


def _read_source(source: str | Path | bytes, max_bytes: int) -> tuple[bytes, str]:
    """The file's bytes and a short name for messages, refusing oversized files before reading."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "upload"
    else:
        path = Path(source)
        name = path.name
        if not path.is_file():
            raise UserError(f"image not found: {path}")
        size = path.stat().st_size
        if size > max_bytes:
            raise UserError(f"{name} is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB")
        data = path.read_bytes()
    if not data:
        raise UserError(f"{name} is empty")
    if len(data) > max_bytes:
        raise UserError(f"{name} is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB")
    return data, name


def _to_srgb(im: Image.Image) -> Image.Image:
    """Convert through the embedded ICC profile (phone photos in Display P3, CMYK prints)."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "CMYK"):
        return im
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(im, profile, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im  # a broken profile is not worth refusing the photo for


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16-bit and float greyscale -> 8-bit "L"; PIL's own convert clips instead of scaling."""
    arr = np.asarray(im, dtype=np.float64)
    if im.mode == "F":
        arr = arr * 255.0 if arr.size and np.nanmax(arr) <= 1.0 else arr
    else:  # "I;16*" and "I" (how PIL opens 16-bit PNG/TIFF greyscale)
        arr = arr / 257.0
    return Image.fromarray(np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8))


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _high_depth_to_l(im)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        # Transparent areas become white, as the app shows them, not black as a plain convert would.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    im = _to_srgb(im)
    return im if im.mode == "RGB" else im.convert("RGB")


def load_image(source: str | Path | bytes, max_pixels: int | None = None, max_bytes: int | None = None) -> np.ndarray:
    """Decode an upload to an RGB uint8 array (H, W, 3) at full resolution.

    Accepts JPEG, PNG, WebP, BMP, TIFF and GIF (first frame); applies EXIF orientation;
    composites transparency over white; converts greyscale, palette, CMYK and 16-bit to RGB.
    Limits default to STUDIO_MAX_MEGAPIXELS and STUDIO_MAX_UPLOAD_MB (:mod:`pipeline.limits`).
    """
    max_pixels = max_pixels or limits.max_pixels()
    data, name = _read_source(source, max_bytes or limits.upload_bytes())
    too_many = f"{name} has too many pixels; the limit is {max_pixels / 1e6:.0f} MP"
    with warnings.catch_warnings():
        # Our own limit is checked on the header below; PIL's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            kind = _sniff(data)
            if kind:
                raise UserError(f"{name} looks like a {kind} file but is corrupt or truncated") from None
            raise UserError(f"{name} is not an image; use {SUPPORTED}") from None
        except Image.DecompressionBombError:
            raise UserError(too_many) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise UserError(f"{name} could not be read: {_reason(exc)}") from None
        kind = FORMATS.get(im.format or "")
        if kind is None:
            raise UserError(f"{name} is {im.format or 'an unknown format'}; use {SUPPORTED}")
        width, height = im.size
        # Checked on the header, before any pixel is decoded.
        if width * height > max_pixels:
            raise UserError(
                f"{name} is {width}x{height} ({width * height / 1e6:.1f} MP); the limit is {max_pixels / 1e6:.0f} MP"
            )
        if min(width, height) < MIN_SIDE:
            raise UserError(f"{name} is too small ({width}x{height}); faces need at least {MIN_SIDE} px per side")
        try:
            im.seek(0)  # GIF/TIFF/MPO: the first frame
            im.load()
            im = ImageOps.exif_transpose(im) or im
            rgb = _to_rgb(im)
        except Image.DecompressionBombError:
            raise UserError(too_many) from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
            raise UserError(f"{name} is corrupt or truncated ({kind}): {_reason(exc)}") from None
    return np.array(rgb, dtype=np.uint8)


def _sniff(data: bytes) -> str | None:
    """The format a file claims by its first bytes, to tell a damaged image from a non-image."""
    signatures = {
        b"\xff\xd8": "JPEG",
        b"\x89PNG": "PNG",
        b"GIF8": "GIF",
        b"BM": "BMP",
        b"II*\x00": "TIFF",
        b"MM\x00*": "TIFF",
    }
    for magic, kind in signatures.items():
        if data.startswith(magic):
            return kind
    return "WebP" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:120]


def downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """A copy no longer than ``max_side`` px and the factor applied (<= 1), for fast detection.

    Coordinates found on the copy map back to the original by dividing by the factor.
    """
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
    # The exact factor per axis differs by rounding; the mean is good to a fraction of a pixel.
    return small, (size[0] / width + size[1] / height) / 2


def save_image(image: np.ndarray, path: str | Path, model: str | None = None, generated: bool = True) -> Path:
    """Write an RGB uint8 array; the format follows the extension (PNG, JPEG, WebP).

    The file says it was AI-edited and by which ``model`` (:mod:`pipeline.provenance`);
    ``generated`` pixels (not a plain crop) also get the visible mark when it is switched on.
    """
    path = Path(path)
    pixels = provenance.maybe_mark(image) if generated else image
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(pixels)).save(path, **provenance.save_options(path, model))
    except (KeyError, ValueError):
        raise UserError(f"cannot write {path.name}: unknown image extension {path.suffix!r}") from None
    except OSError as exc:
        raise UserError(f"cannot write {path}: {_reason(exc)}") from None
    return path
