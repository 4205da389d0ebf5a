"""Image intake: every common format and mode decodes to RGB; bad uploads give one-line errors."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import UserError
from pipeline.faces.images import downscale, load_image

FACES = Path(__file__).parent / "data" / "faces"


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def gradient(w: int = 96, h: int = 64) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    return Image.fromarray(np.stack([x, 255 - x, np.full_like(x, 90)], -1))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with almost no pixel data (a bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def assert_user_error(source, match: str, **kw) -> str:
    with pytest.raises(UserError, match=match) as info:
        load_image(source, **kw)
    message = str(info.value)
    assert "\n" not in message and len(message) < 200
    return message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_formats_decode_to_rgb(fmt):
    img = load_image(encode(gradient(), fmt))
    assert img.shape == (64, 96, 3) and img.dtype == np.uint8
    # Lossy formats move values a little; the gradient must survive.
    assert abs(int(img[:, -1, 0].mean()) - 255) < 20 and int(img[:, 0, 0].mean()) < 20


def test_paths_and_bytes_agree():
    from_path = load_image(FACES / "astronaut.png")
    assert from_path.shape == (512, 512, 3)
    assert np.array_equal(from_path, load_image((FACES / "astronaut.png").read_bytes()))


def test_wrong_extension_is_read_by_content(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(gradient(), "PNG"))
    assert np.array_equal(load_image(path), np.asarray(gradient()))


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (80, 40), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 40, 40))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    img = load_image(encode(im, "JPEG", exif=exif, quality=95))
    assert img.shape == (80, 40, 3)  # now portrait
    assert img[:30, :, 0].mean() > 200 and img[:30, :, 2].mean() < 60  # the red half is on top


def test_transparency_is_white():
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[:20] = (200, 0, 0, 255)  # opaque red top; transparent black bottom
    img = load_image(encode(Image.fromarray(rgba), "PNG"))
    assert tuple(img[5, 5]) == (200, 0, 0) and tuple(img[35, 35]) == (255, 255, 255)


def test_palette_with_transparency_is_white():
    im = Image.new("P", (40, 40), 1)
    im.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    im.paste(0, (0, 0, 40, 20))
    img = load_image(encode(im, "PNG", transparency=0))
    assert tuple(img[5, 5]) == (255, 255, 255) and tuple(img[35, 5]) == (10, 200, 10)


def test_greyscale_cmyk_and_16_bit_become_rgb():
    grey = load_image(encode(Image.new("L", (40, 40), 77), "PNG"))
    assert grey.shape == (40, 40, 3) and (grey == 77).all()
    cmyk = load_image(encode(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG"))  # pure red ink
    assert cmyk.shape == (40, 40, 3) and cmyk[..., 0].mean() > 200 and cmyk[..., 1:].mean() < 60
    deep = np.full((40, 40), 65535, np.uint16)
    deep[20:] = 32896  # 128 * 257
    img = load_image(encode(Image.fromarray(deep), "PNG"))
    assert img[5, 5, 0] == 255 and img[30, 5, 0] == 128  # scaled, not clipped to white


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    img = load_image(data)
    assert img[..., 0].mean() > 200 and img[..., 2].mean() < 50


def test_bad_uploads_give_one_line_errors(tmp_path):
    jpeg = encode(gradient(400, 300), "JPEG")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo\n")
    assert_user_error(empty, "empty")
    assert_user_error(b"", "empty")
    assert_user_error(tmp_path / "missing.jpg", "not found")
    assert_user_error(text, "not an image")
    assert_user_error(jpeg[: len(jpeg) // 2], "corrupt or truncated")
    assert_user_error(jpeg[:200] + bytes(range(256)) * 4, "JPEG .*corrupt")
    assert_user_error(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "PNG .*corrupt")
    assert_user_error(encode(Image.new("RGB", (1, 1)), "PNG"), "too small")
    assert_user_error(encode(Image.new("RGB", (300, 20)), "PNG"), "too small")


def test_size_limits(monkeypatch):
    assert_user_error(png_header_only(100_000, 100_000), "limit is 40 MP")  # past PIL's own bomb check
    assert "6400x6400" in assert_user_error(png_header_only(6400, 6400), "limit is 40 MP")
    blank = encode(Image.new("RGB", (400, 300)), "PNG")
    assert_user_error(blank, "limit is 0 MP", max_pixels=100_000)
    monkeypatch.setenv("STUDIO_MAX_MEGAPIXELS", "0.1")
    assert_user_error(blank, r"120000 MP|0\.1 MP|limit")
    monkeypatch.setenv("STUDIO_MAX_MEGAPIXELS", "1")
    assert load_image(blank).shape == (300, 400, 3)
    monkeypatch.setenv("STUDIO_MAX_UPLOAD_MB", "0.0001")
    assert_user_error(blank, "MB; the limit")
    monkeypatch.setenv("STUDIO_MAX_UPLOAD_MB", "lots")
    assert_user_error(blank, "must be a number")


def test_downscale_keeps_aspect_and_reports_factor():
    image = np.zeros((1000, 3000, 3), np.uint8)
    small, scale = downscale(image, 1600)
    assert small.shape == (533, 1600, 3) and scale == pytest.approx(1600 / 3000, rel=1e-3)
    same, one = downscale(image[:100, :100], 1600)
    assert one == 1.0 and same.shape == (100, 100, 3)
