"""Measuring talking-head videos as they are watched: dlib on the frames decoded from the MP4.

Held-out photos talk, pasted back into the photo, in both modes: typed text (espeak-ng's
phoneme timings) and natural recorded speech the AT-net never heard. Every number is read
from the frames as written to the video:

* **Mouth amplitude.** Inner-lip aperture (gap between the inner lips / mouth width) per
  frame; its range is p90 - p10 over a clip. In text mode, the share of m/b/p phonemes whose
  centre frame has the lips closed (aperture < 0.05).
* **Lip sync on natural speech.** Correlation of the aperture with the speech loudness (dB,
  floored at -40) over the frames.
* **Fidelity.** Sharpness (Laplacian variance of the face, frames / the photo through the
  same video scaling) and dlib's identity distance of frames to the photo (same person below
  0.6; the goal is 0.4).
* **Blinks.** Eye aspect ratio in the frames where the eyes should be shut, over its median
  in open frames (the goal is under a half).
* **Speed.** Frames per second end to end (speech, track, frames, MP4) for a 256 px face.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from ..talk.audio import FPS, SAMPLE_RATE, envelope, load_audio
from ..talk.mouth import inner_gap, normalise
from ..talk.talking_head import mouth_box, strip, talk_video

# Sentences outside the AT-net training grammar, about 3-5 s each at 160 words per minute.
SENTENCES = (
    "Please bring me a warm cup of coffee and some bread.",
    "My father fixed the old piano with a tiny hammer.",
)
END_TO_END_TEXT = "Good morning everyone, and thank you all for coming today; we will start the meeting in a minute."
BILABIALS = {"p", "b", "m"}
CLOSED_APERTURE = 0.05
IDENTITY_EVERY = 8
GOALS = {"aperture_range": ">= 0.25", "bilabial_closed_all": ">= 0.7", "loudness_corr": ">= 0.45",
         "sharpness_ratio": ">= 0.9", "identity_mean": "<= 0.4", "blink_ear_ratio": "< 0.5",
         "fps_end_to_end": ">= 25", "av_gap_s": "<= 0.04"}  # fmt: skip


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def random_codes(G, count: int, seed: int = 0, truncation: float = 0.7) -> torch.Tensor:
    """(count, n_latent, dim) W+ codes of random faces, pulled towards the average like the app's."""
    with torch.no_grad():
        w_mean = G.mean_w()
        z = torch.randn(count, G.style_dim, generator=torch.Generator().manual_seed(seed))
        w = w_mean + truncation * (G.mapping(z) - w_mean)
    return w[:, None].repeat(1, G.n_latent, 1)


def read_video_landmarks(frames: np.ndarray, photo_landmarks: np.ndarray, scale: float) -> np.ndarray:
    """(T, 68, 2) dlib landmarks of decoded frames, the face box taken from the photo's landmarks
    (the head sways by a few pixels; the shape model settles on the face within such a box)."""
    from ..faces.detection import detect_faces, landmarks_for_box

    found = detect_faces(frames[0], cnn_fallback=False)
    if found:
        box = found[0].box
    else:
        pts = photo_landmarks * scale
        box = tuple(int(v) for v in (*pts.min(axis=0), *pts.max(axis=0)))
    return np.stack([landmarks_for_box(f, box) for f in frames])


def apertures(landmarks: np.ndarray) -> np.ndarray:
    out = []
    for points in landmarks:
        shape = normalise(points)[0]
        out.append(inner_gap(shape) / max(shape[54, 0] - shape[48, 0], 1e-6))
    return np.array(out)


def _face_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from scipy.spatial import ConvexHull

    pts = landmarks[np.r_[0:27]]
    hull = pts[ConvexHull(pts).vertices]
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(hull).astype(np.int32)], 1)
    return mask.astype(bool)


def through_video(image: np.ndarray, path: Path) -> np.ndarray:
    """``image`` as a player shows it after the same scaling and compression as the talking video:
    the fair reference for its sharpness."""
    from ..talk.video import read_frames, write_video

    write_video(np.repeat(image[None], 5, axis=0), np.zeros(SAMPLE_RATE // 5, np.float32), SAMPLE_RATE, path)
    return read_frames(path)[2]


def measure_clip(path: Path, photo: np.ndarray, photo_landmarks: np.ndarray, wave: np.ndarray,
                 blinks: np.ndarray, phonemes=None) -> tuple[dict, np.ndarray]:  # fmt: skip
    """The module docstring's numbers for one video of ``photo``; also the decoded frames."""
    from ..bench.photo import sharpness
    from ..faces.attributes import analyze, identity_distance
    from ..faces.face_geometry import eye_aspect_ratio
    from ..talk.video import probe, read_frames

    frames = read_frames(path)
    scale = frames.shape[1] / photo.shape[0]
    reference = through_video(photo, path.with_suffix(".still.mp4"))
    marks = read_video_landmarks(frames, photo_landmarks, scale)
    aperture = apertures(marks)
    n = min(len(frames), len(blinks))
    loud = np.clip(envelope(wave)[: len(aperture)], -40, 0)
    mask = _face_mask(photo_landmarks * scale, reference.shape[:2])
    ref_sharp = sharpness(reference, mask)
    sharp = np.median([sharpness(f, mask) for f in frames[::4]]) / max(ref_sharp, 1e-9)
    photo_attrs = analyze([reference])[0]
    distances = [identity_distance(a, photo_attrs) for a in analyze(list(frames[::IDENTITY_EVERY]))]
    ear = np.array([eye_aspect_ratio(m) for m in marks[:n]])
    shut, open_ = blinks[:n] >= 1, blinks[:n] == 0
    info = probe(path)
    row = {
        "aperture_p10": float(np.percentile(aperture, 10)),
        "aperture_p90": float(np.percentile(aperture, 90)),
        "aperture_range": float(np.percentile(aperture, 90) - np.percentile(aperture, 10)),
        "loudness_corr": _corr(aperture[: len(loud)], loud),
        "sharpness_ratio": float(sharp),
        "identity_mean": float(np.nanmean(distances)),
        "identity_max": float(np.nanmax(distances)),
        "blink_ear_ratio": float(ear[shut].mean() / np.median(ear[open_])) if shut.any() else float("nan"),
        "av_gap_s": abs(len(frames) / FPS - len(wave) / SAMPLE_RATE),
        "duration_s": info["duration"],
    }
    if phonemes is not None:
        centres = [int((p.start + p.end) / 2 * FPS) for p in phonemes if p.symbol in BILABIALS]
        centres = [c for c in centres if c < len(aperture)]
        row["bilabials"] = len(centres)
        row["bilabial_closed"] = float(np.mean(aperture[centres] < CLOSED_APERTURE)) if centres else float("nan")
    return row, frames


def bench_video(
    studio,
    photos: list[Path],
    natural: list[Path],
    speech_model,
    strip_path=None,
    log: Callable[[str], None] = print,
) -> dict:
    """Talking videos of held-out ``photos`` saying :data:`SENTENCES` and lip-syncing ``natural`` clips."""
    from ..bench.photo import invert_photo
    from ..talk.speech import synthesize
    from ..talk.talking_head import blink_track, load_model_talk_map

    model = studio.model
    talk_map = load_model_talk_map(model.name, model.generator, model.weights_dir)
    speeches = [synthesize(text, voice="en-us", wpm=160) for text in SENTENCES]
    waves = [load_audio(p) for p in natural]
    rows: dict[str, list[dict]] = {"text": [], "natural": []}
    strips = []
    frames_made, render_seconds = 0, 0.0
    with tempfile.TemporaryDirectory(prefix="bench-talk-") as tmp:
        for i, photo_path in enumerate(photos):
            session = invert_photo(studio, photo_path, steps=0)
            photo, aligned = session.photo, session.aligned
            wplus = session.latent.wplus(model.n_latent)
            jobs = [("text", text, None, speech) for text, speech in zip(SENTENCES, speeches)]
            jobs += [("natural", None, path, wave) for path, wave in zip(natural, waves)]
            for k, (mode, text, audio, speech) in enumerate(jobs):
                out = Path(tmp) / f"{i}-{k}.mp4"
                result = talk_video(model.generator, wplus, talk_map, out, text=text, audio=audio,
                                    noise=session.latent.noise, photo=(photo, aligned), speech_model=speech_model,
                                    seed=k)  # fmt: skip
                frames_made += len(result.frames)
                render_seconds += result.timings["render"]
                wave = speech.wave if mode == "text" else speech
                n = len(result.frames)
                row, decoded = measure_clip(out, photo, aligned.face.landmarks, wave, blink_track(n, k),
                                            speech.phonemes if mode == "text" else None)  # fmt: skip
                rows[mode].append({"photo": photo_path.name, **row})
                if i < 2 and k in (0, len(speeches)):  # the first two photos, typed and natural speech
                    box = mouth_box(aligned.face.landmarks * decoded.shape[1] / photo.shape[0], decoded.shape[1])
                    strips += [strip(decoded, 10, 160), strip(decoded, 10, 160, box)]
            session.close()
            log(f"photo {i + 1}/{len(photos)}: aperture range "
                f"{np.nanmedian([r['aperture_range'] for r in rows['text'] + rows['natural']]):.3f}")  # fmt: skip
    if strip_path is not None and strips:
        from ..faces.images import save_image

        save_image(np.concatenate(strips, axis=0), strip_path)
    summary = {mode: {key: round(float(np.nanmedian([r[key] for r in rs])), 4) for key in rs[0] if key != "photo"}
               for mode, rs in rows.items() if rs}  # fmt: skip
    if rows["text"]:  # the share of every m/b/p spoken, not a median of per-clip shares
        counts = np.array([r["bilabials"] for r in rows["text"]])
        closed_ = np.array([np.nan_to_num(r["bilabial_closed"]) for r in rows["text"]])
        summary["text"]["bilabial_closed_all"] = round(float((counts * closed_).sum() / max(counts.sum(), 1)), 4)
    return {"photos": len(photos), "sentences": len(SENTENCES), "natural_clips": [p.name for p in natural],
            "frames": frames_made, "render_fps": round(frames_made / max(render_seconds, 1e-9), 1),
            "threads": torch.get_num_threads(), "median": summary,
            "clips": {mode: [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rs]
                      for mode, rs in rows.items()}}  # fmt: skip


def bench_end_to_end(studio, photo_path: Path, speech_model, out: Path, side: int = 256, repeats: int = 2) -> dict:
    """Frames per second, text to MP4, of a photo whose face fills a ``side`` px video (models
    loaded; best of ``repeats``), and the audio and video durations."""
    from ..bench.photo import invert_photo, png_bytes
    from ..faces.images import load_image
    from ..talk.talking_head import load_model_talk_map
    from ..talk.video import probe

    model = studio.model
    talk_map = load_model_talk_map(model.name, model.generator, model.weights_dir)
    photo = np.asarray(cv2.resize(load_image(photo_path), (side, side), interpolation=cv2.INTER_LANCZOS4))
    session = invert_photo(studio, png_bytes(photo), steps=0)
    best = None
    for _ in range(repeats):
        start = time.time()
        result = talk_video(model.generator, session.latent.wplus(model.n_latent), talk_map, out,
                            text=END_TO_END_TEXT, noise=session.latent.noise,
                            photo=(session.photo, session.aligned), speech_model=speech_model)  # fmt: skip
        seconds = time.time() - start
        if best is None or seconds < best[0]:
            best = (seconds, result)
    session.close()
    seconds, result = best
    info = probe(result.path)
    return {
        "side": side,
        "frames": len(result.frames),
        "clip_seconds": round(result.seconds, 3),
        "video_seconds": info["duration"],
        "seconds": round(seconds, 2),
        "fps_end_to_end": round(len(result.frames) / seconds, 1),
        "av_gap_s": round(abs(info["duration"] - result.seconds), 3),
        "timings": result.timings,
        "audio": info["audio"],
        "video": info["video"],
    }
