"""Writing talking-head videos: frames + speech -> MP4 (H.264 yuv420p, AAC), tagged as AI-edited.

Uses the ffmpeg binary that imageio-ffmpeg ships (no system ffmpeg needed), called
with argument lists, never through a shell. Frames are piped raw; the audio goes
through a temporary WAV file, cut or padded to the video's length so both streams
end together.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .. import provenance
from ..errors import UserError

MIN_SIDE = 256  # smaller frames are upscaled so players show them at a useful size
TIMEOUT_SECONDS = 300
_METADATA_KEY = re.compile(r"^[A-Za-z0-9_]{1,40}$")


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _as_frames(frames) -> np.ndarray:
    arr = np.asarray(frames) if not isinstance(frames, list) else np.stack([np.asarray(f) for f in frames])
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or len(arr) == 0:
        raise ValueError(f"frames must be (T, H, W, 3) uint8 with T > 0, got {arr.shape} {arr.dtype}")
    return np.ascontiguousarray(arr)


def output_size(height: int, width: int, min_side: int = MIN_SIDE) -> tuple[int, int]:
    """(height, width) after upscaling by a whole factor to at least ``min_side``, rounded to even (H.264)."""
    factor = max(1, -(-min_side // min(height, width)))
    h, w = height * factor, width * factor
    return h + h % 2, w + w % 2


def write_video(
    frames, wave: np.ndarray, sr: int, path: str | Path, fps: int = 25, metadata: dict | None = None
) -> Path:
    """Write an MP4 of ``frames`` ((T, H, W, 3) uint8 or a list of them) with ``wave`` as its sound.

    ``metadata`` becomes container tags (e.g. ``{"model": "atnet"}``); the provenance tags
    (:func:`pipeline.provenance.video_tags`) always say the video is AI-edited, by which model
    and tool; the frames get the visible mark when it is switched on.
    """
    frames = _as_frames(frames)
    if provenance.mark_enabled():
        frames = np.stack([provenance.mark(f) for f in frames])
    t, h, w, _ = frames.shape
    out_h, out_w = output_size(h, w)
    tags = {str(k): str(v) for k, v in (metadata or {}).items()}
    for key in tags:
        if not _METADATA_KEY.match(key):
            raise ValueError(f"invalid metadata key {key!r}")
    tags = {**tags, **provenance.video_tags(tags.get("model"))}  # the provenance is never overridden
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    duration = t / fps
    audio = np.asarray(wave, dtype=np.float32).reshape(-1)
    n_audio = int(round(duration * sr))
    audio = np.pad(audio[:n_audio], (0, max(0, n_audio - len(audio))))

    with tempfile.TemporaryDirectory(prefix="mux-") as tmp:
        wav_path = Path(tmp) / "audio.wav"
        sf.write(str(wav_path), audio, sr, subtype="PCM_16")
        cmd = [
            _ffmpeg(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:0",
            "-i", str(wav_path),
            "-map", "0:v:0", "-map", "1:a:0",
            "-vf", f"scale={out_w}:{out_h}:flags=lanczos",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "20",
            "-c:a", "aac", "-b:a", "128k", "-ar", "48000",  # 48 kHz: the rate every player expects
            "-t", f"{duration:.3f}", "-movflags", "+faststart+use_metadata_tags",  # keep custom tags such as "model"
        ]  # fmt: skip
        for key, value in tags.items():
            cmd += ["-metadata", f"{key}={value}"]
        cmd.append(str(path))
        try:
            result = subprocess.run(cmd, input=frames.tobytes(), capture_output=True, timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise UserError(f"writing the video took longer than {TIMEOUT_SECONDS} s") from None
    if result.returncode != 0:
        raise UserError(f"ffmpeg could not write the video: {result.stderr.decode('utf-8', 'replace').strip()[-300:]}")
    return path


def probe(path: str | Path) -> dict:
    """Streams, duration and tags of a media file, read from ``ffmpeg -i`` (imageio-ffmpeg has no ffprobe)."""
    result = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, timeout=60)
    text = result.stderr.decode("utf-8", "replace")
    info: dict = {"video": None, "audio": None, "duration": None, "tags": {}}
    if m := re.search(r"Duration: (\d+):(\d+):(\d+\.\d+)", text):
        info["duration"] = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    if m := re.search(r"Stream #\S+.*?: Video: (\w+).*?, (\w+)(?:\([^)]*\))?, (\d+)x(\d+).*?([\d.]+) fps", text):
        info["video"] = {"codec": m.group(1), "pix_fmt": m.group(2), "width": int(m.group(3)),
                         "height": int(m.group(4)), "fps": float(m.group(5))}  # fmt: skip
    if m := re.search(r"Stream #\S+.*?: Audio: (\w+).*?, (\d+) Hz", text):
        info["audio"] = {"codec": m.group(1), "sample_rate": int(m.group(2))}
    header = text.split("Duration:")[0]
    for m in re.finditer(r"^\s{4}(\w+)\s*: (.*)$", header, flags=re.MULTILINE):
        info["tags"][m.group(1)] = m.group(2).strip()
    return info


def sketch(track: np.ndarray, size: int = 256) -> np.ndarray:
    """(T, 68, 2) normalised landmarks -> (T, size, size, 3) uint8 line drawings, for previews."""
    from PIL import Image, ImageDraw

    curves = [range(0, 17), range(17, 22), range(22, 27), range(27, 31), range(31, 36)]
    loops = [range(36, 42), range(42, 48), range(48, 60), range(60, 68)]
    # The normalised face spans about x -1.2..1.2, y -0.8..1.9 (eye midpoint at the origin).
    scale, offset = size / 3.0, np.array([size / 2, size * 0.33])
    frames = np.empty((len(track), size, size, 3), dtype=np.uint8)
    for i, shape in enumerate(np.asarray(track)):
        image = Image.new("RGB", (size, size), (250, 248, 244))
        draw = ImageDraw.Draw(image)
        points = shape * scale + offset
        for idx in curves:
            draw.line([tuple(points[j]) for j in idx], fill=(60, 60, 60), width=2)
        for k, idx in enumerate(loops):
            colour = (180, 40, 60) if k >= 2 else (60, 60, 60)
            draw.line([tuple(points[j]) for j in [*idx, idx[0]]], fill=colour, width=2)
        frames[i] = np.asarray(image)
    return frames


def read_frames(path: str | Path) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of a video, decoded as a player shows them."""
    info = probe(path)
    w, h = info["video"]["width"], info["video"]["height"]
    cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    result = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise UserError(f"ffmpeg could not read {Path(path).name}: {result.stderr.decode('utf-8', 'replace')[-200:]}")
    return np.frombuffer(result.stdout, np.uint8).reshape(-1, h, w, 3)
