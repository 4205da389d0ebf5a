"""Measuring talking-head videos: speed, lip sync and stability, on the model's own faces.

* Speed: frames per second of the VG step (talk map, batched rendering, attention blend)
  on the CPU threads given, and the seconds a 5 s clip takes end to end (speech, mouth
  track, frames, MP4) once the models are loaded.
* Lip sync: espeak-ng speaks held-out sentences, so the true viseme openness of every
  frame is known (:mod:`pipeline.talk.visemes`); the mouth opening that dlib measures on the
  output frames is correlated with it, for each way of making the mouth track (AT-net and
  the rule-based baseline from the audio alone; the phoneme timings as the upper bound).
  ``render_corr`` correlates the measured opening with the opening the track asked for:
  how faithfully the generator shows the landmarks.
* Stability: dlib's identity distance of frames to the still (the same person below 0.6;
  the goal is under 0.4) and frame-to-frame landmark motion outside the mouth and eyes
  (brows, nose, sides of the jaw), in inter-ocular distances.
* Blinks: how much the eye aspect ratio dlib measures drops in the frames where the eyes
  should be shut.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ..talk.audio import SAMPLE_RATE, frame_count
from ..talk.mouth import PARAMS, closed, inner_gap, normalise
from ..talk.talking_head import (
    MEASURES,
    TalkMap,
    animate,
    blink_track,
    measures,
    mouth_box,
    mouth_changes,
    prepare,
    read_landmarks,
    strip,
    talk_video,
)

# Sentences outside the AT-net training grammar, about 3-5 s each at 160 words per minute.
SENTENCES = (
    "Please bring me a warm cup of coffee and some bread.",
    "We moved to a small town by the sea when I was five.",
    "Why does the blue bird sing so loudly every morning?",
    "My father fixed the old piano with a tiny hammer.",
)
END_TO_END_TEXT = "Good morning everyone, and thank you all for coming today; we will start the meeting in a minute."
STILL_POINTS = np.r_[0:4, 13:17, 17:36]  # jaw sides, brows, nose: they should not move while talking
METHODS = ("atnet", "baseline", "phonemes")


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


def bench_video(
    G,
    talk_map: TalkMap,
    speech_model,
    faces: int = 3,
    identity_every: int = 4,
    strip_path=None,
    log: Callable[[str], None] = print,
) -> dict:
    """The numbers of the module docstring on ``faces`` random faces of generator ``G``."""
    from ..faces.attributes import analyze, identity_distance
    from ..talk.atnet import baseline_mouth_track, phoneme_mouth_track
    from ..talk.speech import synthesize
    from ..talk.visemes import phoneme_track

    speeches = [synthesize(text, voice="en-us", wpm=160) for text in SENTENCES]
    codes = random_codes(G, faces)
    rows: dict[str, list[dict]] = {m: [] for m in METHODS}
    frames_made, render_seconds = 0, 0.0
    strips = []
    for f in range(faces):
        head = prepare(G, codes[f : f + 1], talk_map)
        still_attrs = analyze([head.still])[0]
        iod = head.iod
        for s, speech in enumerate(speeches):
            n = frame_count(len(speech.wave))
            truth = phoneme_track(speech.phonemes, n)[:, PARAMS.index("open")]
            rest = closed(head.shape)
            tracks = {
                "atnet": speech_model.mouth_track(speech.wave, rest),
                "baseline": baseline_mouth_track(speech.wave, rest),
                "phonemes": phoneme_mouth_track(speech.phonemes, n, rest),
            }
            blinks = blink_track(n, seed=s)
            for method, track in tracks.items():
                clip = animate(head, track, blinks, rest=rest)
                frames_made += n
                render_seconds += clip.render_seconds
                measured = read_landmarks(clip.frames, head.box)
                opening = np.array([inner_gap(m) for m in _normalised(measured)])
                asked = mouth_changes(track, talk_map, rest)[:, MEASURES.index("open")]
                motion = np.linalg.norm(np.diff(measured[:, STILL_POINTS], axis=0), axis=2).mean() / iod
                row = {
                    "lip_sync_corr": _corr(opening, truth),
                    "render_corr": _corr(opening, asked),
                    "opening_range_iod": float(np.percentile(opening, 95) - np.percentile(opening, 5)),
                    "jitter_iod": float(motion),
                }
                if method == "atnet":
                    # Blinks: how far dlib sees the eyes close, in eye aspect ratio (about 0.3 open).
                    ear = measures(measured)[:, MEASURES.index("eyes")]
                    shut, open_ = blinks >= 1, blinks == 0
                    row["blink_ear_drop"] = float(ear[open_].mean() - ear[shut].mean()) if shut.any() else float("nan")
                    sampled = clip.frames[::identity_every]
                    attrs = analyze(list(sampled))
                    distances = [identity_distance(a, still_attrs) for a in attrs]
                    row |= {"identity_mean": float(np.mean(distances)), "identity_max": float(np.max(distances))}
                rows[method].append(row)
                if f == 0 and s == 0 and method in ("atnet", "baseline"):
                    strips.append(strip(clip.frames, count=10, size=128))
                    strips.append(
                        strip(clip.frames, count=10, size=128, box=mouth_box(head.landmarks, head.still.shape[0]))
                    )
        log(f"face {f + 1}/{faces}: lip sync (AT-net) "
            f"{np.nanmean([r['lip_sync_corr'] for r in rows['atnet']]):.2f}")  # fmt: skip
    summary = {m: {k: round(float(np.nanmean([r[k] for r in rs])), 4) for k in rs[0]} for m, rs in rows.items()}
    if strip_path is not None:
        from ..faces.images import save_image

        save_image(np.concatenate(strips, axis=0), strip_path)
    return {
        "faces": faces,
        "sentences": len(SENTENCES),
        "frames": frames_made,
        "fps": round(frames_made / render_seconds, 1),
        "threads": torch.get_num_threads(),
        **summary,
    }


def _normalised(landmarks: np.ndarray) -> np.ndarray:
    return np.stack([normalise(points)[0] for points in landmarks])


def bench_end_to_end(G, talk_map: TalkMap, speech_model, out, repeats: int = 2) -> dict:
    """Seconds for a clip of about 5 s, text to MP4, with the models already loaded (best of ``repeats``)."""
    code = random_codes(G, 1, seed=7)
    best = None
    for _ in range(repeats):
        start = time.time()
        result = talk_video(G, code, talk_map, out, text=END_TO_END_TEXT, method="atnet", speech_model=speech_model)
        seconds = time.time() - start
        if best is None or seconds < best[0]:
            best = (seconds, result)
    seconds, result = best
    from ..talk.video import probe

    info = probe(result.path)
    return {
        "clip_seconds": round(result.seconds, 3),
        "video_seconds": info["duration"],
        "seconds": round(seconds, 2),
        "real_time_factor": round(seconds / result.seconds, 2),
        "timings": result.timings,
        "audio": info["audio"],
        "video": info["video"],
        "sample_rate": SAMPLE_RATE,
    }
