"""Talking heads: a still face moved by a mouth landmark track, at the photo's resolution.

The VG step of ATVGnet, done on the photo's own pixels (see :mod:`pipeline.talk.frames`):

* The **canvas** is what the video shows: the photo (pasted back), its face at the photo's
  resolution, or the generator's render enlarged when there is no photo.
* Every frame warps the canvas so its landmarks follow the speech track (lips and jaw) and a
  slight head sway; the motion fades out on a ring around the head. Blinks close the canvas's
  lids before it is warped.
* Where the lips part, the opening is filled from the generator's **mouth-open render** of the
  same face: a **talk map** (per model, fitted once by :func:`pipeline.training.talk_map.fit_talk_map`)
  turns a mouth opening into W offsets on a range of W+ rows. It is fitted on the model's own
  renders: random faces are measured with dlib's 68 landmarks, a ridge regression from
  whitened W to the measures gives the directions, each group's W+ rows are the range that
  reaches most of the asked change while moving the brows and nose least.
* A smiling still speaks with a relaxed mouth unless asked to keep its expression.

Landmarks are in the normalised frame of :mod:`pipeline.talk.mouth` (eye midpoint at the origin,
inter-ocular distance 1), so tracks from :mod:`pipeline.talk.atnet` drive any face.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ..errors import UserError
from ..faces.face_geometry import eye_aspect_ratio, skin_luminance
from ..models.generator import Generator
from ..models.render import render
from .atnet import MAX_OPEN
from .frames import (
    Canvas,
    MouthInterior,
    Warper,
    blink_landmarks,
    close_lids,
    head_sway,
    make_canvas,
    sway_matrix,
)
from .mouth import JAW, MOUTH, closed, inner_gap, normalise, with_opening

FPS = 25
MEASURES = ("open", "width", "eyes")
"""Landmark measures the talk map moves, all from dlib's 68 points in the normalised frame:

* ``open``: gap between the inner lips (IOD), as :func:`pipeline.talk.mouth.inner_gap`;
* ``width``: mouth corner to corner (IOD);
* ``eyes``: eye aspect ratio (about 0.3 open, under 0.15 closed).
"""
GROUPS = {"mouth": (0, 1), "eyes": (2,)}  # measures that share a range of W+ rows
READ_SIZE = 256  # renders are enlarged to this for dlib, whose landmark model wants faces of 80+ px
RIGID = np.r_[17:27, 27:36]  # brows and nose: they should not move when the mouth or the eyes do
BATCH = 32


# --------------------------------------------------------------------------- measuring faces


def measures(landmarks: np.ndarray) -> np.ndarray:
    """(..., 68, 2) landmarks in any frame -> (..., 3) :data:`MEASURES`."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    flat = landmarks.reshape(-1, 68, 2)
    out = np.empty((len(flat), len(MEASURES)))
    for i, points in enumerate(flat):
        shape, _ = normalise(points)
        out[i] = (inner_gap(shape), shape[54, 0] - shape[48, 0], eye_aspect_ratio(shape))
    return out.reshape(*landmarks.shape[:-2], len(MEASURES))


def enlarge(image: np.ndarray, size: int = READ_SIZE) -> np.ndarray:
    if image.shape[0] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


def face_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """dlib's face box on an enlarged render; the fixed box of aligned crops when none is found."""
    from ..faces.attributes import FALLBACK_BOX
    from ..faces.detection import detect_faces

    big = enlarge(image)
    found = detect_faces(big, cnn_fallback=False)
    if found:
        return found[0].box
    return tuple(round(f * READ_SIZE) for f in FALLBACK_BOX)


def read_landmarks(images: np.ndarray, box=None) -> np.ndarray:
    """(N, H, W, 3) renders -> (N, 68, 2) dlib landmarks in their own pixels.

    ``box`` (on the enlarged copy; one for all images or a list, one each) is the still's
    face box: reused for its frames, since the head does not move, it keeps the landmarks
    from jumping with the detector. Detected per image when None.
    """
    from ..faces.detection import landmarks_for_box

    boxes = [box] * len(images) if box is None or isinstance(box[0], (int, np.integer)) else box
    out = np.empty((len(images), 68, 2))
    for i, (image, b) in enumerate(zip(images, boxes)):
        out[i] = landmarks_for_box(enlarge(image), b or face_box(image)) * (image.shape[0] / READ_SIZE)
    return out


# --------------------------------------------------------------------------- the talk map


@dataclass
class TalkMap:
    """Landmark measure changes -> W offsets on each group's W+ rows (see :func:`fit_talk_map`)."""

    basis: np.ndarray  # (3, style_dim): W offset per unit change of each measure
    layers: dict[str, tuple[int, int]]  # group -> half-open range of W+ rows
    limits: np.ndarray  # (3, 2) lowest and highest change the fit saw (commands are clipped to them)
    info: dict = field(default_factory=dict)

    def offsets(self, changes: np.ndarray, n_latent: int) -> torch.Tensor:
        """(T, 3) measure changes -> (T, n_latent, style_dim) W+ offsets."""
        changes = np.clip(np.asarray(changes, dtype=np.float64), self.limits[:, 0], self.limits[:, 1])
        out = torch.zeros(len(changes), n_latent, self.basis.shape[1])
        for group, idx in GROUPS.items():
            lo, hi = self.layers[group]
            per_frame = torch.from_numpy(changes[:, idx] @ self.basis[list(idx)]).float()
            out[:, lo:hi] += per_frame[:, None]
        return out

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"basis": torch.from_numpy(self.basis).float().contiguous(),
                   "limits": torch.from_numpy(self.limits).float().contiguous()}  # fmt: skip
        meta = {"format": "face-studio-talk-map", "measures": json.dumps(MEASURES),
                "layers": json.dumps(self.layers), "info": json.dumps(self.info)}  # fmt: skip
        save_file(tensors, str(path), metadata=meta)
        return path


def generator_digest(G: Generator) -> str:
    """A short fingerprint of the generator's weights: a talk map only fits the weights it was fitted on."""
    h = hashlib.sha1()
    for name, value in sorted(G.state_dict().items()):
        if not name.startswith("noises."):
            h.update(name.encode())
            h.update(value.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def load_talk_map(path: str | Path, G: Generator | None = None, refit_hint: str = "") -> TalkMap:
    """Read a talk map, checked against generator ``G`` when given."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    hint = refit_hint or "python -m pipeline train talkmap"
    if not path.is_file():
        raise UserError(f"this model has no talk map yet ({path}); fit it with `{hint}`")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            basis, limits = f.get_tensor("basis").double().numpy(), f.get_tensor("limits").double().numpy()
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"cannot read talk map {path.name}: {str(exc)[:120]}") from None
    if meta.get("format") != "face-studio-talk-map" or tuple(json.loads(meta.get("measures", "[]"))) != MEASURES:
        raise UserError(f"{path.name} is not a talk map of this version; fit it again with `{hint}`")
    info = json.loads(meta.get("info", "{}"))
    if G is not None:
        if basis.shape[1] != G.style_dim:
            raise UserError(f"{path.name} is for a model with {basis.shape[1]}-d codes, not {G.style_dim}")
        if info.get("generator") and info["generator"] != generator_digest(G):
            raise UserError(f"{path.name} was fitted on other generator weights; fit it again with `{hint}`")
    layers = {k: (int(v[0]), int(v[1])) for k, v in json.loads(meta["layers"]).items()}
    return TalkMap(basis=basis, layers=layers, limits=limits, info=info)


# --------------------------------------------------------------------------- blinks


BLINK_GAP_MIN, BLINK_GAP_MAX = 2.0, 6.0  # seconds between blinks
BLINK_PROFILE = np.array([0.5, 1.0, 1.0, 0.7, 0.4, 0.15])  # fast close, slower opening: ~240 ms at 25 fps


def blink_track(n_frames: int, seed: int = 0, fps: int = FPS) -> np.ndarray:
    """(n_frames,) eye closure 0..1 with blinks at human intervals.

    People blink about 15-25 times a minute when talking; the gaps between blinks are
    skewed (2 s plus a gamma of shape 2, mean 3.5 s, at most 6 s) and a blink lasts about a
    quarter of a second, closing faster than it opens. The first blink comes 0.5-2.5 s in.
    """
    rng = np.random.default_rng(seed)
    track = np.zeros(n_frames)
    t = rng.uniform(0.5, 2.5)
    while True:
        start = int(round(t * fps))
        if start + len(BLINK_PROFILE) > n_frames:
            break
        track[start : start + len(BLINK_PROFILE)] = BLINK_PROFILE
        t += BLINK_GAP_MIN + min(rng.gamma(2.0, 0.75), BLINK_GAP_MAX - BLINK_GAP_MIN)
    return track


# --------------------------------------------------------------------------- the talking head


RELAXED_WIDTH = 0.88  # IOD: corner to corner of a relaxed, closed mouth
RELAXED_CORNER_LIFT = 0.02  # IOD: how far a relaxed mouth's corners sit above the lips' centre line
RELAX_SECONDS = 0.3  # a smile relaxes over this long at the start, not in one jump


MIN_OPEN_PX = 1.5  # inner lips closer than this are closed
OPEN_STILL_KEEP = 0.4  # an open still's mouth closes to this share of its gap at most
OPEN_SHARE = 0.4  # an open mouth: this share of the gap is dark cavity or teeth
MISREAD_CLOSE = 0.05  # IOD: a closed still's lips close at most this far; dlib's gap beyond it is lip


def resting_gap(shape: np.ndarray, still_open: bool) -> float:
    """How far (IOD) the inner lips of a still's normalised (68, 2) ``shape`` stay apart at rest.

    An open still keeps its whole gap. A closed one whose inner lips dlib placed apart (on the
    lip line, or the lower one on a chin crease) closes them only :data:`MISREAD_CLOSE`: its
    lips already meet, and pulling the landmarks together would squeeze the chin up into them.
    """
    gap = max(float(inner_gap(shape)), 0.0)
    return gap if still_open else max(gap - MISREAD_CLOSE, 0.0)


def mouth_is_open(image: np.ndarray, landmarks: np.ndarray) -> bool:
    """Whether the still's mouth is really open, not a closed mouth whose inner lips dlib placed
    apart: the gap of an open mouth is dark (the cavity) or bright and grey (teeth), while a
    misread gap holds lip and skin."""
    shape, frame = normalise(landmarks)
    if inner_gap(shape) * frame.scale < MIN_OPEN_PX:
        return False
    inner = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(inner, [np.round(landmarks[60:68]).astype(np.int32)], 1)
    pixels = image[inner > 0].astype(np.float64)
    if len(pixels) < 3:
        return False
    skin = max(skin_luminance(image, landmarks), 1.0)
    luma = pixels @ [0.299, 0.587, 0.114]
    grey = pixels.max(axis=1) - pixels.min(axis=1) < 40
    cavity_or_teeth = (luma < 0.35 * skin) | ((luma > 0.85 * skin) & grey)
    return float(cavity_or_teeth.mean()) > OPEN_SHARE


def relaxed(rest: np.ndarray) -> np.ndarray:
    """A closed (68, 2) normalised mouth with its smile let go: no wider than a relaxed mouth,
    corners no higher (a neutral face is left as it is)."""
    out = np.array(rest, dtype=np.float64)
    mouth = out[MOUTH]
    centre = mouth.mean(axis=0)
    width = out[54, 0] - out[48, 0]
    if width > RELAXED_WIDTH:
        mouth[:, 0] = centre[0] + (mouth[:, 0] - centre[0]) * RELAXED_WIDTH / width
    line = (out[62, 1] + out[66, 1]) / 2
    lift = line - (out[48, 1] + out[54, 1]) / 2
    if lift > RELAXED_CORNER_LIFT:
        half = max((mouth[6, 0] - mouth[0, 0]) / 2, 1e-6)  # mouth[0], mouth[6]: the corners 48 and 54
        middle = (mouth[0, 0] + mouth[6, 0]) / 2
        reach = np.clip(np.abs(mouth[:, 0] - middle) / half, 0, 1) ** 2  # corners move, the centre stays
        mouth[:, 1] += (lift - RELAXED_CORNER_LIFT) * reach
    out[MOUTH] = mouth
    return out


@dataclass
class TalkingHead:
    """A still face ready to talk: its code and render, the canvas the video shows, how to move it."""

    generator: Generator
    wplus: torch.Tensor  # (1, n_latent, dim)
    noise: list[torch.Tensor]
    talk_map: TalkMap
    still: np.ndarray  # (S, S, 3) uint8: the generator's render
    box: tuple[int, int, int, int]  # dlib face box on the enlarged render
    canvas: Canvas  # what the video shows (the photo, its face, or the render enlarged)
    warper: Warper
    interior: MouthInterior
    mouth_open: bool  # the still's mouth is open (not only parted in dlib's reading)

    @property
    def landmarks(self) -> np.ndarray:
        """The still's landmarks in canvas pixels."""
        return self.canvas.landmarks

    @property
    def shape(self) -> np.ndarray:
        """The still's landmarks in the normalised frame (what :func:`pipeline.talk.atnet.speech_track` takes)."""
        return normalise(self.canvas.landmarks)[0]

    @property
    def iod(self) -> float:
        return self.canvas.iod


def prepare(
    G: Generator,
    wplus: torch.Tensor,
    talk_map: TalkMap,
    noise: list[torch.Tensor] | None = None,
    photo: np.ndarray | None = None,
    aligned=None,
    paste: bool = True,
) -> TalkingHead:
    """Render the still, find its landmarks and build the canvas, once per clip.

    ``photo``, ``aligned``: the photo the face came from (its pixels are what moves); ``paste``:
    the video shows the whole photo (else only its face, at the photo's resolution).
    """
    if wplus.ndim != 3 or wplus.shape[0] != 1:
        raise UserError(f"a talking head needs one W+ code (1, n_latent, dim), got {tuple(wplus.shape)}")
    noise = (
        [n[:1].detach().cpu() for n in noise] if noise is not None else [b.detach().cpu() for b in G.noise_buffers()]
    )
    wplus = wplus.detach().cpu().float()
    still = render(G, wplus, noise, BATCH)[0]
    box = face_box(still)
    # The generator's own face with its mouth as open as the talk map reaches: the mouth interior.
    widest = np.zeros((1, len(MEASURES)))
    widest[0, MEASURES.index("open")] = talk_map.limits[MEASURES.index("open"), 1]
    opened = render(G, wplus + talk_map.offsets(widest, G.n_latent), noise, BATCH)[0]
    canvas = make_canvas(still, read_landmarks(still[None], box)[0], photo, aligned, paste)
    still_open = mouth_is_open(canvas.image, canvas.landmarks)
    resting = resting_gap(normalise(canvas.landmarks)[0], still_open)
    interior = MouthInterior.build(canvas, opened, read_landmarks(opened[None], box)[0], resting,
                                   lip=0.0 if still_open else resting)  # fmt: skip
    return TalkingHead(G, wplus, noise, talk_map, still, box, canvas, Warper.for_canvas(canvas), interior, still_open)


@dataclass
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8, at the canvas's resolution
    targets: np.ndarray  # (T, 68, 2) canvas pixels: where each frame's landmarks were moved to
    blinks: np.ndarray  # (T,) eye closure
    render_seconds: float


def frame_targets(
    head: TalkingHead,
    track: np.ndarray,
    rest: np.ndarray | None = None,
    sway: np.ndarray | None = None,
    keep_expression: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(T, 68, 2) canvas-pixel landmarks the warp moves the still's to, each frame (the eyes as
    open as the still's: blinks close the canvas's lids instead), and (T, R, 2) where the pinned
    ring goes (None: it stays). See :func:`animate` for the arguments."""
    from ..faces.align import apply

    track = np.array(track, dtype=np.float64)
    n = len(track)
    rest = closed(track[0]) if rest is None else np.asarray(rest, dtype=np.float64)
    if head.mouth_open:
        # An open still (a grin with teeth) cannot close: the photo has no lips to cover the teeth
        # with, and squeezing them away draws a wavy seam. Its mouth closes only part of the way.
        kept = OPEN_STILL_KEEP * float(inner_gap(head.shape))
        start = with_opening(head.shape[None], rest, [kept])[0]  # the jaw closes it; the upper lip stays
        # The speech opens from there, within the same widest jaw (it does not shout).
        gaps = inner_gap(track) - inner_gap(rest)
        track = with_opening(track, rest, inner_gap(rest) + gaps * max(1 - kept / MAX_OPEN, 0.3))
        track[:, MOUTH] += (start - rest)[MOUTH][None]
        rest = start
    elif (misread := resting_gap(head.shape, False)) > 0:
        start = with_opening(head.shape[None], rest, [misread])[0]
        track[:, MOUTH] += (start - rest)[MOUTH][None]
        rest = start
    # Speech moves the jaw from where the still's is: closing the still's mouth lifts the lower
    # lip, never the chin's outline.
    track[:, JAW] -= (rest - head.shape)[JAW][None]
    if not keep_expression:
        ease = np.clip((np.arange(n) + 1) / max(RELAX_SECONDS * FPS, 1), 0, 1) ** 2
        track[:, MOUTH] += ease[:, None, None] * (relaxed(rest) - rest)[MOUTH][None]
    frame = head.canvas.frame
    targets = frame.invert(track.reshape(-1, 2)).reshape(n, 68, 2)
    if sway is None:
        return targets, None
    pivot = head.landmarks[8] + (head.landmarks[8] - head.landmarks[27]) * 0.6  # the neck, under the chin
    rings = np.empty((n, *head.warper.ring.shape))
    for t in range(n):
        motion = np.vstack([sway_matrix(sway[t], pivot, head.iod), [0, 0, 1]])
        targets[t], rings[t] = apply(motion, targets[t]), apply(motion, head.warper.ring)
    return targets, rings


def animate(
    head: TalkingHead,
    track: np.ndarray,
    blinks: np.ndarray | None = None,
    rest: np.ndarray | None = None,
    sway: np.ndarray | None = None,
    keep_expression: bool = False,
) -> Clip:
    """(T, 68, 2) normalised landmark track (mouth and jaw moving) -> frames of the canvas.

    ``blinks``: (T,) eye closure 0..1 (default: none); ``rest``: the track's resting face (default
    its first frame, mouth closed); ``sway``: (T, 3) head motion from :func:`pipeline.talk.frames.head_sway`
    (default: none); ``keep_expression``: keep the still's smile while talking (default: the mouth
    relaxes, since people rarely talk through a fixed grin). Frames whose landmarks do not move
    are the canvas itself.
    """
    start = time.time()
    n = len(track)
    blinks = np.zeros(n) if blinks is None else np.asarray(blinks, dtype=np.float64)
    targets, rings = frame_targets(head, track, rest, sway, keep_expression)
    canvas, iod = head.canvas, head.iod
    frames = np.empty((n, *canvas.image.shape), np.uint8)
    for t in range(n):
        closure = float(blinks[t])
        if rings is None and closure <= 0 and np.abs(targets[t] - canvas.landmarks).max() < 0.05:
            frames[t] = canvas.image
            continue
        lids = close_lids(canvas.image, canvas.landmarks, closure, iod) if closure > 0 else None
        image = head.warper.warp(targets[t], None if rings is None else rings[t], lids)
        frames[t] = head.interior.fill(image, targets[t], iod)
        targets[t] = blink_landmarks(targets[t], closure)  # where the frame's lids are
    return Clip(frames, targets, blinks, time.time() - start)


def strip(
    frames: np.ndarray, count: int = 8, size: int = 128, box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """``count`` evenly spaced frames side by side, enlarged to ``size`` px: a contact sheet.

    ``box`` (left, top, right, bottom): show only that part of each frame (a close-up).
    """
    idx = np.linspace(0, len(frames) - 1, count).round().astype(int)
    if box is not None:
        left, top, right, bottom = box
        frames = frames[:, top:bottom, left:right]
    return np.concatenate([np.asarray(Image.fromarray(frames[i]).resize((size, size), Image.Resampling.BICUBIC))
                           for i in idx], axis=1)  # fmt: skip


def mouth_box(landmarks: np.ndarray, size: int, side_iod: float = 1.4) -> tuple[int, int, int, int]:
    """A square (left, top, right, bottom) around the mouth of (68, 2) landmarks in a ``size`` px frame: a close-up."""
    centre = np.asarray(landmarks)[48:68].mean(axis=0)
    half = side_iod * normalise(landmarks)[1].scale / 2
    left, top = (int(np.clip(round(c - half), 0, max(0, size - 2 * half))) for c in centre)
    side = int(round(2 * half))
    return left, top, min(size, left + side), min(size, top + side)


# --------------------------------------------------------------------------- one call: speech in, video out


REFIT_COMMAND = "python -m pipeline train talkmap --model {name}"


def talk_map_path(model_name: str, weights_dir: Path | None = None) -> Path:
    """Where a model's talk map lives (see :func:`pipeline.models.registry.companion_path`)."""
    from ..models.registry import companion_path

    return companion_path(model_name, "talk_map", weights_dir)


def load_model_talk_map(model_name: str, G: Generator, weights_dir: Path | None = None) -> TalkMap:
    return load_talk_map(talk_map_path(model_name, weights_dir), G, REFIT_COMMAND.format(name=model_name))


@dataclass
class TalkResult:
    path: Path
    frames: np.ndarray  # what went into the video (pasted into the photo when asked)
    clip: Clip
    method: str
    seconds: float  # audio length
    timings: dict[str, float]


def talk_video(
    G: Generator,
    wplus: torch.Tensor,
    talk_map: TalkMap,
    out: str | Path,
    text: str | None = None,
    audio: str | Path | bytes | None = None,
    voice: str = "en-us",
    wpm: int = 160,
    pitch: int = 50,
    method: str | None = None,
    noise: list[torch.Tensor] | None = None,
    photo: tuple[np.ndarray, object] | None = None,
    paste: bool = True,
    blinks: bool = True,
    head_motion: bool = True,
    keep_expression: bool = False,
    seed: int = 0,
    model_name: str = "",
    speech_model=None,
    dlib_lock=None,
) -> TalkResult:
    """A face saying ``text`` (espeak-ng) or lip-syncing ``audio``, as an MP4 with the sound.

    ``photo``: (photo, :class:`pipeline.faces.align.AlignedFace`) the face came from: the frames
    move the photo's own pixels, and show the whole photo (``paste``) or its face at the photo's
    resolution. ``head_motion``: a slight natural sway; ``keep_expression``: keep a smile while
    talking. ``speech_model``: a loaded :class:`pipeline.talk.atnet.TalkModel` (loaded when needed).
    ``dlib_lock``: held while dlib reads the still (its models are not thread-safe).
    """
    from contextlib import nullcontext

    from .atnet import speech_track
    from .audio import SAMPLE_RATE
    from .video import write_video

    timings: dict[str, float] = {}
    t0 = time.time()
    with dlib_lock or nullcontext():
        head = prepare(G, wplus, talk_map, noise, *(photo or (None, None)), paste=paste)
    timings["still"] = time.time() - t0
    t0 = time.time()
    track = speech_track(text=text, audio=audio, face=head.shape, voice=voice, wpm=wpm, pitch=pitch,
                         method=method, model=speech_model)  # fmt: skip
    timings["speech"] = time.time() - t0
    n = len(track.landmarks)
    clip = animate(head, track.landmarks, blink_track(n, seed) if blinks else None, rest=track.face,
                   sway=head_sway(n, seed) if head_motion else None, keep_expression=keep_expression)  # fmt: skip
    timings["render"] = clip.render_seconds
    frames = clip.frames
    t0 = time.time()
    tag = f"{model_name}+atnet-{track.method}" if model_name else f"atnet-{track.method}"
    path = write_video(frames, track.wave, SAMPLE_RATE, out, fps=FPS, metadata={"model": tag})
    timings["write"] = time.time() - t0
    return TalkResult(Path(path), frames, clip, track.method, len(track.wave) / SAMPLE_RATE,
                      {k: round(v, 3) for k, v in timings.items()})  # fmt: skip
