"""Video mux: frames + speech -> MP4 with H.264 video, AAC audio and an AI-edited tag."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest

from pipeline.talk.mouth import articulate, closed
from pipeline.talk.video import output_size, probe, sketch, write_video

SR = 16_000


def frames(n: int, size: int = 64) -> np.ndarray:
    """A bright square that moves a little each frame, on a dark background."""
    out = np.full((n, size, size, 3), 30, dtype=np.uint8)
    for i in range(n):
        x = 8 + i % (size - 24)
        out[i, 20:36, x : x + 16] = (240, 200, 40)
    return out


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_mp4_has_video_and_audio_of_the_right_duration(tmp_path):
    path = write_video(frames(50), tone(2.0), SR, tmp_path / "talk.mp4", metadata={"model": "atnet"})
    info = probe(path)
    assert info["video"]["codec"] == "h264" and info["video"]["pix_fmt"] == "yuv420p"
    assert (info["video"]["width"], info["video"]["height"]) == (256, 256)  # 64 px upscaled
    assert info["video"]["fps"] == 25
    assert info["audio"]["codec"] == "aac"
    assert info["duration"] == pytest.approx(2.0, abs=0.08)
    assert "AI-edited" in info["tags"]["comment"] and "model atnet" in info["tags"]["comment"]
    assert "Face Studio" in info["tags"]["encoder_tool"]
    assert info["tags"]["model"] == "atnet"
    reader = imageio.get_reader(str(path), "ffmpeg")
    decoded = [frame for frame in reader]
    reader.close()
    assert len(decoded) == 50 and decoded[0].shape == (256, 256, 3)
    # The moving square is still where it was drawn (scaled by 4).
    assert decoded[10][20 * 4 + 20, (8 + 10) * 4 + 20].mean() > 120


def test_audio_is_cut_or_padded_to_the_video(tmp_path):
    short = probe(write_video(frames(25), tone(0.4), SR, tmp_path / "short.mp4"))
    long = probe(write_video(frames(25), tone(3.0), SR, tmp_path / "long.mp4"))
    assert short["audio"] and long["audio"]
    assert short["duration"] == pytest.approx(1.0, abs=0.08)
    assert long["duration"] == pytest.approx(1.0, abs=0.08)
    assert short["tags"]["comment"].startswith("AI-edited with Face Studio")


def test_list_of_frames_and_odd_sizes(tmp_path):
    odd = [f[:63, :61] for f in frames(10)]
    info = probe(write_video(odd, tone(0.4), SR, tmp_path / "odd.mp4"))
    assert info["video"]["width"] % 2 == 0 and info["video"]["height"] % 2 == 0
    assert min(info["video"]["width"], info["video"]["height"]) >= 256
    assert output_size(512, 640) == (512, 640)  # large frames are left alone


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_video(np.zeros((5, 64, 64, 3), dtype=np.float32), tone(1), SR, tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="metadata key"):
        write_video(frames(5), tone(1), SR, tmp_path / "x.mp4", metadata={"a b; rm": "x"})


def test_sketch_draws_the_mouth_opening():
    rest = closed(np.c_[np.linspace(-1, 1, 68), np.linspace(-0.5, 1.8, 68)])
    rest[48:68] = [[-0.45, 1.0], [-0.3, 0.95], [-0.12, 0.93], [0, 0.95], [0.12, 0.93], [0.3, 0.95], [0.45, 1.0],
                   [0.3, 1.2], [0.13, 1.26], [0, 1.28], [-0.13, 1.26], [-0.3, 1.2], [-0.39, 1.03], [-0.12, 1.03],
                   [0, 1.03], [0.12, 1.03], [0.39, 1.03], [0.12, 1.03], [0, 1.03], [-0.12, 1.03]]  # fmt: skip
    track = articulate(rest, np.array([[0, 0, 0, 0, 0], [0.3, 0, 0, 0, 0]]))
    images = sketch(track, size=128)
    assert images.shape == (2, 128, 128, 3) and images.dtype == np.uint8
    lips = lambda im: (np.abs(im.astype(int) - [180, 40, 60]).sum(-1) < 60).any(1).sum()  # noqa: E731
    assert lips(images[1]) > lips(images[0]) + 5  # rows with lip lines: taller when open
