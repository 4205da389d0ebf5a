"""Talking heads: a still face's latent code moved by a mouth landmark track, rendered in batches.

The VG step of ATVGnet, with a StyleGAN2 generator in place of its image network:

* A **talk map** (per model, fitted once by :func:`pipeline.training.talk_map.fit_talk_map`) turns changes of three
  landmark measures into W offsets on a range of W+ rows: the mouth's opening and width
  (the articulations a 64 px face can show) and the eyes' opening (for blinks). It is fitted
  on the model's own renders: random faces are measured with dlib's 68 landmarks, a ridge
  regression from whitened W to the measures gives the directions, each group's W+ rows are
  the range that reaches most of the asked change while moving the brows and nose least, and
  a second ridge regression from measured landmark changes back to direction strengths
  calibrates them. Speech tracks open the mouth more than a small model's faces can; the
  track is scaled into the model's reach (every syllable shows, in proportion).
* An **attention mask** from where the landmarks move (the lips and chin over the whole
  clip; the eyes while they blink) blends the generated frames onto the still, so hair,
  background and identity stay exactly as they were outside it. Mouth and eyes render
  apart, each through its own mask.
* Frames render in batches with the still's fixed noise maps: nothing boils or reloads.

Landmarks are in the normalised frame of :mod:`pipeline.talk.mouth` (eye midpoint at the origin,
inter-ocular distance 1), so tracks from :mod:`pipeline.talk.atnet` drive any model.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from ..errors import UserError
from ..faces.face_geometry import eye_aspect_ratio
from ..faces.paste import polygon_mask, soft_region
from ..models.generator import Generator
from ..models.render import render
from .mouth import LEFT_EYE, RIGHT_EYE, inner_gap, normalise

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
FULL_OPENING = 0.25  # IOD: a wide-open vowel in the speech track, mapped to the model's widest opening
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


BLINK_PROFILE = np.array([0.5, 1.0, 1.0, 0.7, 0.4, 0.15])  # fast close, slower opening: ~240 ms at 25 fps


def blink_track(n_frames: int, seed: int = 0, fps: int = FPS) -> np.ndarray:
    """(n_frames,) eye closure 0..1 with blinks at human intervals.

    People blink about 15-25 times a minute when talking; the gaps between blinks are
    skewed (gamma, shape 2, mean 3 s here, at least 1 s) and a blink lasts about a quarter
    of a second, closing faster than it opens. The first blink comes 0.5-2.5 s in.
    """
    rng = np.random.default_rng(seed)
    track = np.zeros(n_frames)
    t = rng.uniform(0.5, 2.5)
    while True:
        start = int(round(t * fps))
        if start + len(BLINK_PROFILE) > n_frames:
            break
        track[start : start + len(BLINK_PROFILE)] = BLINK_PROFILE
        t += max(1.0, rng.gamma(2.0, 1.5))
    return track


# --------------------------------------------------------------------------- masks


MASK_POINTS = np.r_[5:12, 48:68]  # chin and lips: where speech shows
MOVE_THRESHOLD = 0.03  # IOD: landmarks that move less than this over the clip (the jaw near the ears) stay still
MOUTH_GROW, MOUTH_FEATHER = 0.12, 0.18  # IOD: the mask reaches past the moving lips and chin, fading out
EYE_GROW, EYE_FEATHER = 0.12, 0.12
OUTLINE_FEATHER = 0.15  # IOD: the mouth mask fades out this far inside the face outline


def attention_masks(
    still_landmarks: np.ndarray, track_px: np.ndarray, iod: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Where the generated motion may show: (mouth mask, eye mask), each (size, size) in [0, 1].

    The mouth mask covers every position the moving lip and chin landmarks take over the
    clip (so the opened mouth fits inside), grown and feathered, within the face outline;
    the eye mask covers both eyes and lids.
    """
    still = np.asarray(still_landmarks, dtype=np.float64)
    motion = np.linalg.norm(track_px - still[None], axis=2).max(axis=0) / iod
    # The jaw's sides move a little too, but they are the face's outline against the
    # background: generated there, the outline would waver. The chin and lips carry the motion.
    moving = np.intersect1d(np.flatnonzero(motion > MOVE_THRESHOLD), MASK_POINTS)
    if len(moving) >= 3:
        points = np.concatenate([still[moving], track_px[:, moving].reshape(-1, 2)])
        mouth = soft_region(points, size, MOUTH_GROW * iod, MOUTH_FEATHER * iod)
        # ... and inside the still's face outline, fading out before it: the chin's edge against
        # the neck and background stays the still's (a moving edge there shows as a ghost ring).
        outline = polygon_mask(still[np.r_[0:27]], size) > 0.5
        depth = ndimage.distance_transform_edt(outline) / max(OUTLINE_FEATHER * iod, 1e-6)
        mouth = mouth * np.clip(depth, 0, 1).astype(np.float32) ** 2
    else:
        mouth = np.zeros((size, size), np.float32)
    eyes = np.maximum(*(soft_region(still[e], size, EYE_GROW * iod, EYE_FEATHER * iod) for e in (LEFT_EYE, RIGHT_EYE)))
    return mouth, eyes


# --------------------------------------------------------------------------- the talking head


@dataclass
class TalkingHead:
    """A still face ready to talk: its code and render, where its landmarks are, the talk map."""

    generator: Generator
    wplus: torch.Tensor  # (1, n_latent, dim)
    noise: list[torch.Tensor]
    talk_map: TalkMap
    still: np.ndarray  # (H, W, 3) uint8
    landmarks: np.ndarray  # (68, 2) in the still's pixels
    box: tuple[int, int, int, int]  # dlib face box on the enlarged still

    @property
    def shape(self) -> np.ndarray:
        """The still's landmarks in the normalised frame (what :func:`pipeline.talk.atnet.speech_track` takes)."""
        return normalise(self.landmarks)[0]

    @property
    def iod(self) -> float:
        return float(normalise(self.landmarks)[1].scale)


def prepare(
    G: Generator, wplus: torch.Tensor, talk_map: TalkMap, noise: list[torch.Tensor] | None = None
) -> TalkingHead:
    """Render the still and find its landmarks, once per clip."""
    if wplus.ndim != 3 or wplus.shape[0] != 1:
        raise UserError(f"a talking head needs one W+ code (1, n_latent, dim), got {tuple(wplus.shape)}")
    noise = (
        [n[:1].detach().cpu() for n in noise] if noise is not None else [b.detach().cpu() for b in G.noise_buffers()]
    )
    still = render(G, wplus.detach().cpu().float(), noise, BATCH)[0]
    box = face_box(still)
    landmarks = read_landmarks(still[None], box)[0]
    return TalkingHead(G, wplus.detach().cpu().float(), noise, talk_map, still, landmarks, box)


@dataclass
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    mouth_mask: np.ndarray  # (H, W) in [0, 1]
    eye_mask: np.ndarray
    blinks: np.ndarray  # (T,) eye closure
    changes: np.ndarray  # (T, 3) measure changes asked of the generator
    render_seconds: float


def mouth_changes(track: np.ndarray, talk_map: TalkMap, rest: np.ndarray | None = None) -> np.ndarray:
    """(T, 68, 2) normalised track -> (T, 3) measure changes to ask of the generator (eyes: 0).

    Changes are taken from the track's resting face (``rest``, default its first frame's
    closed mouth) and scaled into the model's reach: a model whose faces open their mouths
    only a little still shows every syllable, at its own scale, in proportion.
    """
    from .mouth import closed

    track = np.asarray(track, dtype=np.float64)
    rest = closed(track[0]) if rest is None else rest
    scale = min(1.0, talk_map.limits[0, 1] / FULL_OPENING)
    changes = np.zeros((len(track), len(MEASURES)))
    changes[:, :2] = scale * (measures(track)[:, :2] - measures(rest)[:2])
    return changes


def animate(
    head: TalkingHead,
    track: np.ndarray,
    blinks: np.ndarray | None = None,
    rest: np.ndarray | None = None,
    batch: int = BATCH,
) -> Clip:
    """(T, 68, 2) normalised landmark track (mouth and jaw moving) -> frames of the head.

    ``blinks``: (T,) eye closure 0..1 (default: none); ``rest``: the track's resting face
    (see :func:`mouth_changes`). The generator renders the code moved by the talk map; the
    attention masks blend it onto the still.
    """
    start = time.time()
    track = np.asarray(track, dtype=np.float64)
    n = len(track)
    blinks = np.zeros(n) if blinks is None else np.asarray(blinks, dtype=np.float64)
    _, to_norm = normalise(head.landmarks)
    changes = mouth_changes(track, head.talk_map, rest)
    changes[:, 2] = blinks * head.talk_map.limits[2, 0]  # a blink closes the eyes as far as the model can
    track_px = to_norm.invert(track.reshape(-1, 2)).reshape(track.shape)
    size = head.still.shape[0]
    mouth_mask, eye_mask = attention_masks(head.landmarks, track_px, head.iod, size)

    G = head.generator
    # Mouth and eyes render apart, each shown only through its own mask: the small side
    # effects of one direction on the other region never reach the video.
    mouth_changes_only, eye_changes_only = changes.copy(), np.zeros_like(changes)
    mouth_changes_only[:, 2], eye_changes_only[:, 2] = 0.0, changes[:, 2]
    mouth_offsets = head.talk_map.offsets(mouth_changes_only, G.n_latent)
    blinking = np.flatnonzero(blinks > 0)
    eye_offsets = head.talk_map.offsets(eye_changes_only[blinking], G.n_latent)
    still_f = head.still.astype(np.float32)
    out = np.repeat(still_f[None], n, axis=0)
    moving = mouth_mask.any() and np.abs(mouth_changes_only).max() > 0
    for lo in range(0, n, batch) if moving else ():
        generated = render(G, head.wplus + mouth_offsets[lo : lo + batch], head.noise, batch).astype(np.float32)
        out[lo : lo + batch] += mouth_mask[None, ..., None] * (generated - still_f)
    for lo in range(0, len(blinking), batch):
        idx = blinking[lo : lo + batch]
        generated = render(G, head.wplus + eye_offsets[lo : lo + batch], head.noise, batch).astype(np.float32)
        weight = (eye_mask[None] * np.clip(blinks[idx] * 3, 0, 1)[:, None, None])[..., None]
        out[idx] += weight * (generated - still_f)
    frames = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return Clip(frames, mouth_mask, eye_mask, blinks, changes, time.time() - start)


def paste_frames(frames: np.ndarray, photo: np.ndarray, aligned, still: np.ndarray) -> np.ndarray:
    """Each frame's change from the ``still`` applied to the photo itself, at its resolution
    (see :func:`pipeline.faces.photo_render.render_on_photo`)."""
    from ..faces.photo_render import render_on_photo

    return np.stack([render_on_photo(photo, aligned, still, frame).photo for frame in frames])


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
    """Where a model's talk map lives: in ``weights_dir`` (a model folder standing in for the
    registry's files), else the registry's ``talk_map`` file, else beside its other weights."""
    from ..models.registry import REPO_ROOT, get_model

    if weights_dir is not None:
        return Path(weights_dir) / "talk_map.safetensors"
    try:
        listed = get_model(model_name).files.get("talk_map")
    except UserError:
        listed = None
    return Path(listed) if listed else REPO_ROOT / "weights" / model_name / "talk_map.safetensors"


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
    paste: tuple[np.ndarray, object] | None = None,
    blinks: bool = True,
    seed: int = 0,
    model_name: str = "",
    speech_model=None,
    dlib_lock=None,
) -> TalkResult:
    """A face saying ``text`` (espeak-ng) or lip-syncing ``audio``, as an MP4 with the sound.

    ``paste``: (photo, :class:`pipeline.faces.align.AlignedFace`) to put every frame back into the
    photo. ``speech_model``: a loaded :class:`pipeline.talk.atnet.TalkModel` (loaded when needed).
    ``dlib_lock``: held while dlib reads the still (its models are not thread-safe).
    """
    from contextlib import nullcontext

    from .atnet import speech_track
    from .audio import SAMPLE_RATE
    from .video import write_video

    timings: dict[str, float] = {}
    t0 = time.time()
    with dlib_lock or nullcontext():
        head = prepare(G, wplus, talk_map, noise)
    timings["still"] = time.time() - t0
    t0 = time.time()
    track = speech_track(text=text, audio=audio, face=head.shape, voice=voice, wpm=wpm, pitch=pitch,
                         method=method, model=speech_model)  # fmt: skip
    timings["speech"] = time.time() - t0
    n = len(track.landmarks)
    clip = animate(head, track.landmarks, blink_track(n, seed) if blinks else None, rest=track.face)
    timings["render"] = clip.render_seconds
    frames = clip.frames
    if paste is not None:
        t0 = time.time()
        frames = paste_frames(frames, *paste, head.still)
        timings["paste"] = time.time() - t0
    t0 = time.time()
    tag = f"{model_name}+atnet-{track.method}" if model_name else f"atnet-{track.method}"
    path = write_video(frames, track.wave, SAMPLE_RATE, out, fps=FPS, metadata={"model": tag})
    timings["write"] = time.time() - t0
    return TalkResult(Path(path), frames, clip, track.method, len(track.wave) / SAMPLE_RATE,
                      {k: round(v, 3) for k, v in timings.items()})  # fmt: skip
