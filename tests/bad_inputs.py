"""The bad-input corpus: every kind of input a stranger may send, made on the fly (no stored binaries),
and one function per surface that feeds a case through it: the package API, the command line and
the app's API. The tests (``tests/test_bad_inputs.py``) and ``pipeline/bench/corpus.py`` share it.

Each case says what must happen: refused with a one-line reason matching ``reason``, or accepted
(``reason`` is None: e.g. an animated GIF is read by its first frame, a hostile file name is just a name).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image
from safetensors.torch import save_file

from pipeline.latent.files import Latent, save_latent
from pipeline.models import registry

DATA = Path(__file__).parent / "data"
FACE = DATA / "faces" / "astronaut.png"
SPEECH = DATA / "audio" / "cmu_arctic_us_aew_a0001.wav"
MODEL = registry.default_model().name  # the model the surfaces run (the embedded model, or a folder standing in for it)
SHELL = "Hello; rm -rf ~ && $(touch {canary}) | `touch {canary}` > {canary} 'quoted' \"double\" \\ %PATH% *"


@dataclass(frozen=True)
class Case:
    kind: str  # image, audio, prompt or latent
    name: str
    make: Callable[[Path, dict], Path | str]  # (folder, model dims) -> a file, or the prompt text
    reason: str | None  # regex of the one-line reason, None when the input must be accepted

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.name}"


@dataclass
class Outcome:
    accepted: bool
    message: str = ""  # the reason given when refused

    def matches(self, case: Case) -> bool:
        """The outcome the case expects: a one-line reason that names the problem, or acceptance."""
        if case.reason is None:
            return self.accepted
        return (not self.accepted and "\n" not in self.message and 0 < len(self.message) < 300
                and re.search(case.reason, self.message, re.IGNORECASE) is not None)  # fmt: skip


# --------------------------------------------------------------------------- makers


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _face(fmt: str = "JPEG") -> bytes:
    return _encoded(Image.open(FACE).convert("RGB"), fmt)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with almost no pixel data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _animated_gif() -> bytes:
    first = Image.open(FACE).convert("RGB")
    return _encoded(first, "GIF", save_all=True, append_images=[_noise(*first.size, s) for s in range(3)], duration=100)


def _wav(seconds: float, fill: float = 0.0) -> bytes:
    return _encoded_wav(np.full(int(seconds * 16000), fill, np.float32))


def _encoded_wav(wave: np.ndarray, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _ten_minutes() -> bytes:
    speech, sr = sf.read(str(SPEECH), dtype="float32")
    return _encoded_wav(np.tile(speech, int(np.ceil(600 * sr / len(speech))))[: 600 * sr], sr)


def _latent(folder: Path, name: str, dims: dict, model: str = MODEL, shape: tuple | None = None,
            dtype: torch.dtype = torch.float32, fill: float | None = None, generator: str = "") -> Path:  # fmt: skip
    """A latent file written the way the studio writes them, then altered on disk."""
    shape = shape or (1, dims["n_latent"], dims["style_dim"])
    code = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    path = save_latent(folder / name, Latent(code, model=model, space="wplus" if len(shape) == 3 else "w", alignment="utkface"))
    if dtype != torch.float32 or fill is not None or generator:
        # The same metadata around other values: what a careless converter or a bit flip makes.
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = {**f.metadata(), **({"generator": generator} if generator else {})}
        if fill is not None:
            code[..., 0] = fill
        save_file({"latent": code.to(dtype)}, str(path), metadata=meta)
    return path


def _pickle_disguised(folder: Path, name: str) -> Path:
    """A pickle (torch.save) named like a latent file: loading it must never unpickle it."""
    path = folder / name
    torch.save({"latent": torch.zeros(1, 512)}, path)
    return path


def _hostile(name: str) -> Callable[[Path, dict], Path]:
    return lambda folder, dims: _write(folder, name, _face("PNG"))


# --------------------------------------------------------------------------- the corpus


def corpus() -> list[Case]:
    image, audio, latent = "image", "audio", "latent"
    return [
        Case(image, "empty", lambda f, d: _write(f, "empty.png", b""), r"empty"),
        Case(image, "truncated", lambda f, d: _write(f, "cut.jpg", _face()[:4000]), r"corrupt or truncated"),
        Case(image, "corrupt", lambda f, d: _write(f, "noise.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8), r"corrupt"),
        Case(image, "text-as-jpg", lambda f, d: _write(f, "notes.jpg", b"this is not a photo\n" * 20), r"not an image"),
        Case(image, "audio-as-png", lambda f, d: _write(f, "song.png", _wav(1.0, 0.1)), r"not an image"),
        Case(image, "pdf", lambda f, d: _write(f, "scan.jpg", b"%PDF-1.4\n" + bytes(500)), r"not an image"),
        Case(image, "bomb", lambda f, d: _write(f, "bomb.png", _png_header_only(100_000, 100_000)), r"limit is \d+ MP"),
        Case(image, "1x1", lambda f, d: _write(f, "dot.png", _encoded(Image.new("RGB", (1, 1)), "PNG")), r"too small"),
        Case(image, "20000-wide", lambda f, d: _write(f, "wide.png", _encoded(_noise(20_000, 60), "PNG")), r"no face"),
        Case(image, "no-face", lambda f, d: _write(f, "wall.jpg", _encoded(_noise(400, 300), "JPEG")), r"no face"),
        Case(image, "animated-gif", lambda f, d: _write(f, "moving.gif", _animated_gif()), None),
        Case(image, "name-shell", _hostile("$(touch x); rm -rf ~ `id` |&.png"), None),
        Case(image, "name-dashes", _hostile("-rf --help.png"), None),
        Case(image, "name-long", _hostile("a" * 240 + ".png"), None),
        Case(image, "name-unicode", _hostile("顔\u202egnp.exe.png"), None),
        Case(image, "name-dots", _hostile("..png"), None),
        Case(audio, "empty", lambda f, d: _write(f, "empty.wav", b""), r"empty"),
        Case(audio, "silent", lambda f, d: _write(f, "silence.wav", _wav(3.0)), r"silent"),
        Case(audio, "ten-minutes", lambda f, d: _write(f, "lecture.wav", _ten_minutes()), r"limit is \d+ s"),
        Case(audio, "not-audio", lambda f, d: _write(f, "voice.mp3", _face()), r"cannot decode"),
        Case(audio, "truncated", lambda f, d: _write(f, "cut.wav", SPEECH.read_bytes()[:30]), r"cannot decode|too short"),
        Case("prompt", "empty", lambda f, d: "", r"empty|type something"),
        Case("prompt", "control-only", lambda f, d: "\x00\t\n\u200b\u202e", r"empty"),
        Case("prompt", "10000-chars", lambda f, d: "word " * 2000, r"limit is \d+"),
        Case("prompt", "shell", lambda f, d: SHELL.format(canary=f / "canary"), None),
        Case(latent, "other-model", lambda f, d: _latent(f, "ffhq.safetensors", d, model="ffhq-1024"), r"made for model"),
        Case(latent, "wrong-layers", lambda f, d: _latent(f, "rows.safetensors", d, shape=(1, 3, d["style_dim"])), r"layers"),
        Case(latent, "wrong-width", lambda f, d: _latent(f, "wide.safetensors", d, shape=(1, d["n_latent"], 7)), r"style_dim"),
        Case(latent, "float16", lambda f, d: _latent(f, "half.safetensors", d, dtype=torch.float16), r"float32"),
        Case(latent, "nan", lambda f, d: _latent(f, "nan.safetensors", d, fill=float("nan")), r"NaN"),
        Case(latent, "names-a-path", lambda f, d: _latent(f, "path.safetensors", d, generator="../../../etc/passwd"), r"generator"),
        Case(latent, "pickle", lambda f, d: _pickle_disguised(f, "code.safetensors"), r"not a latent file"),
        Case(latent, "random-bytes", lambda f, d: _write(f, "junk.safetensors", bytes(range(256)) * 4), r"not a latent file"),
        Case(latent, "weights", lambda f, d: _weights(f), r"not a latent file"),
    ]  # fmt: skip


def _weights(folder: Path) -> Path:
    """Some other safetensors file (model weights): a valid file, but not a latent."""
    path = folder / "generator.safetensors"
    save_file({"conv.weight": torch.zeros(4, 4)}, str(path))
    return path


def make(case: Case, folder: Path, dims: dict) -> Path | str:
    """The case's input in a folder of its own (so that hostile names cannot collide)."""
    own = folder / case.id
    own.mkdir(parents=True, exist_ok=True)
    return case.make(own, dims)


def dims_of(G) -> dict:
    return {"n_latent": G.n_latent, "style_dim": G.style_dim}


# --------------------------------------------------------------------------- surfaces


def through_api(case: Case, made: Path | str, studio, session) -> Outcome:
    """The package's own functions, as a script would call them."""
    from pipeline.errors import UserError
    from pipeline.talk.audio import load_audio
    from pipeline.talk.speech import synthesize

    try:
        if case.kind == "image":
            studio.open_photo(session, made)
            studio.align(session, 0)
            studio.encode(session)
            studio.save_latent(session)
        elif case.kind == "audio":
            load_audio(made)
        elif case.kind == "prompt":
            synthesize(made)
        else:
            studio.use_latent_file(session, made)
    except UserError as exc:
        return Outcome(False, str(exc))
    return Outcome(True)


def cli_argv(case: Case, made: Path | str, out: Path, good_latent: Path) -> list[str]:
    """The command a user would type for the case."""
    if case.kind == "image":
        return ["align", str(made), "-o", str(out / "aligned.png")]
    if case.kind == "audio":
        return ["talk", str(good_latent), "--audio", str(made), "-o", str(out / "talk.mp4")]
    if case.kind == "prompt":
        return ["talk", str(good_latent), "--text", str(made), "-o", str(out / "talk.mp4")]
    return ["talk", str(made), "--text", "Hello.", "-o", str(out / "talk.mp4")]


def through_cli(case: Case, made: Path | str, out: Path, good_latent: Path) -> Outcome:
    """``python -m pipeline ...`` in this process: exit status 2 and one line on stderr, or success.

    Any exception other than the user errors the CLI turns into a line escapes and fails the caller.
    """
    from pipeline.cli import main

    out.mkdir(parents=True, exist_ok=True)
    stderr, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        status = main(cli_argv(case, made, out, good_latent))
    text = stderr.getvalue().strip()
    if status == 0:
        return Outcome(True)
    if status != 2 or "\n" in text or not text.startswith("error: "):
        return Outcome(False, f"exit status {status}, stderr {text!r}\n")  # never matches: not one line
    return Outcome(False, text.removeprefix("error: "))


def through_app(case: Case, made: Path | str, client) -> Outcome:
    """The app's API as the browser calls it; a refusal arrives as the gr.Error's message."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    try:
        if case.kind == "image":
            client.predict(handle_file(str(made)), api_name="/upload")
            client.predict(api_name="/encode")  # writes a download named after the upload
        elif case.kind == "latent":
            client.predict(handle_file(str(made)), api_name="/start_from_file_encode")
        else:
            client.predict(1, api_name="/random_face")  # a face to animate
            text, audio = (made, None) if case.kind == "prompt" else ("", handle_file(str(made)))
            client.predict(text, "en-us", 160, audio, api_name="/talk")
    except AppError as exc:
        return Outcome(False, str(exc))
    return Outcome(True)


def summary(results: dict[str, dict[str, bool]]) -> dict:
    """Counts per surface: cases tried and handled as expected."""
    out = {}
    for surface, by_case in results.items():
        out[surface] = {"tried": len(by_case), "handled": sum(by_case.values()),
                        "not_handled": sorted(k for k, ok in by_case.items() if not ok)}  # fmt: skip
    return json.loads(json.dumps(out))
