"""The studio's steps as plain Python: one method per tab of the app, on arrays and dataclasses.

``Studio`` is what the Gradio app (``app.py``) calls, and what a script or test can call
without it: align, encode, optimise, edit, paste back, talk, mix, random face, and the creative
steps (edit to a target, localized edit, expression transfer, augmentation set, showcase). Models are
loaded once per process and shared read-only by every session (:func:`load_model` is
cached; inversion never writes to the shared generator). Everything that belongs to one
user lives in a :class:`Session`: their photo, faces, latent code, tuned generator and a
private folder for downloads, deleted by :meth:`Session.close`.

Steps whose package function has not landed yet raise :class:`UserError` saying so;
they never produce stand-in output.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from . import registry
from .align import AlignedFace, align_face
from .checkpoints import load_native
from .directions import TRUNCATION, Direction, load_directions, random_w, with_scales
from .edit import apply_edits
from .encoder import Encoder, load_encoder
from .errors import UserError
from .faces import Face, detect_faces, find_faces, select_face
from .generator import Generator
from .images import load_image, save_image
from .imaging import from_uint8, to_uint8
from .inversion import DEFAULTS, InversionResult, invert
from .latents import Latent, load_latent_for, save_latent
from .metrics import psnr
from .mixing import mix_codes
from .paste import paste_back
from .perceptual import perceptual_distance

DEFAULT_MODEL = "utkface-64"
# A model folder (generator.safetensors, encoder.safetensors, directions.safetensors,
# model.json) that replaces the default model's files: local checkpoints and tests.
OVERRIDE_ENV = "STUDIO_WEIGHTS_OVERRIDE"
# dlib's detectors and networks keep scratch state: one thread at a time may use them.
DLIB_LOCK = threading.RLock()
MAX_NAME = 80  # characters of an upload's name kept in download names
IDENTITY_SAME = 0.6  # dlib descriptor distance below which two faces are the same person
Space = Literal["w", "wplus"]


def pick_device() -> torch.device:
    """CUDA when there is one; the CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelChoice:
    """A model as the picker lists it."""

    name: str
    status: str  # e.g. "embedded", "hub", "local"
    loadable: bool
    reason: str = ""  # why it cannot be loaded

    @property
    def label(self) -> str:
        text = f"{self.name} ({self.status})"
        return text if self.loadable else f"{text}: {self.reason}"


@dataclass
class Model:
    """A loaded model, shared read-only by all sessions."""

    name: str
    generator: Generator
    encoder: Encoder | None
    template: str  # alignment template of its training faces
    directions: dict[str, Direction]
    directions_note: str  # why there are none, when there are none
    w_mean: torch.Tensor  # (1, style_dim)

    @property
    def resolution(self) -> int:
        return self.generator.config.resolution

    @property
    def n_latent(self) -> int:
        return self.generator.n_latent

    @torch.no_grad()
    def render(self, wplus: torch.Tensor, noise: list[torch.Tensor] | None = None, generator: Generator | None = None) -> np.ndarray:
        """W+ (1, n_latent, dim) -> (res, res, 3) uint8, with the fixed (or given) noise maps."""
        G = generator or self.generator
        noise = [n.to(G.device) for n in noise] if noise is not None else G.noise_buffers()
        return to_uint8(G.synthesis(wplus.to(G.device), noise=noise)[0])


def _override_dir() -> Path | None:
    value = os.environ.get(OVERRIDE_ENV, "").strip()
    return Path(value) if value else None


def default_model() -> str:
    return DEFAULT_MODEL if _override_dir() is not None else registry.default_model().name


def model_choices() -> list[ModelChoice]:
    """Every model the picker offers, the default first, with why one cannot load."""
    choices: list[ModelChoice] = []
    if _override_dir() is not None:
        choices.append(ModelChoice(default_model(), "local", True))
    for entry in registry.list_models():
        if not any(c.name == entry.name for c in choices):
            choices.append(ModelChoice(entry.name, entry.status, entry.available, entry.reason))
    return choices


def _load_from_folder(folder: Path, name: str) -> tuple[Generator, Encoder | None, str, Path | None]:
    """A model folder given on the command line (``app.py --weights``): generator, encoder and
    directions by their usual file names; alignment from ``model.json`` or the registry entry."""
    if not (folder / "generator.safetensors").is_file():
        raise UserError(f"no generator.safetensors in {folder}")
    info = json.loads((folder / "model.json").read_text()) if (folder / "model.json").is_file() else {}
    template = info.get("alignment") or registry.get_model(name).alignment
    encoder = folder / "encoder.safetensors"
    directions = folder / "directions.safetensors"
    return (load_native(folder / "generator.safetensors"), load_encoder(encoder) if encoder.is_file() else None,
            template, directions if directions.is_file() else None)  # fmt: skip


def _load_from_registry(name: str) -> tuple[Generator, Encoder | None, str, Path | None]:
    entry = registry.get_model(name)
    encoder, directions = entry.file("encoder"), entry.file("directions")
    return (registry.load_generator(entry), load_encoder(encoder) if encoder and encoder.is_file() else None,
            entry.alignment, directions)  # fmt: skip


@lru_cache(maxsize=2)
def load_model(name: str | None = None) -> Model:
    """A model by registry name (default: the default model), loaded once per process."""
    name = name or default_model()
    folder = _override_dir()
    if folder is not None and name == default_model():
        G, encoder, template, directions_file = _load_from_folder(folder, name)
    else:
        G, encoder, template, directions_file = _load_from_registry(name)
    device = pick_device()
    G = G.to(device).eval().requires_grad_(False)
    encoder = encoder.to(device).eval().requires_grad_(False) if encoder is not None else None
    directions: dict[str, Direction] = {}
    if directions_file is None:
        note = f"Model {name} has no edit directions yet (its directions file is not listed)."
    elif not directions_file.is_file():
        note = f"Model {name} has no edit directions yet ({directions_file.name} is missing)."
    else:
        directions = with_scales(load_directions(directions_file, G.style_dim, G.n_latent), G)
        note = "" if directions else f"{directions_file.name} holds no directions."
    return Model(name=name, generator=G, encoder=encoder, template=template, directions=directions,
                 directions_note=note, w_mean=G.mean_w().to(device))  # fmt: skip


# --------------------------------------------------------------------------- session


class CancelFlag:
    """A stop request that survives copying (unlike ``threading.Event``); inversion polls ``is_set``."""

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        self.requested = True

    def clear(self) -> None:
        self.requested = False

    def is_set(self) -> bool:
        return self.requested


@dataclass
class Session:
    """One user's work. Kept by the app per browser session; nothing here is shared."""

    model: str = ""
    photo: np.ndarray | None = None  # the original upload, full resolution
    photo_name: str = "photo"
    faces: list[Face] = field(default_factory=list)
    aligned: AlignedFace | None = None
    target: np.ndarray | None = None  # the aligned face at the model's resolution
    latent: Latent | None = None  # the current code (encoded, optimised, random or uploaded)
    origin: str = ""  # where the code came from
    target_attrs: object | None = None  # the target's face attributes, measured once
    reconstruction: np.ndarray | None = None
    tuned: Generator | None = None  # pivotally tuned copy for this face, if any
    edited: np.ndarray | None = None
    cancel: CancelFlag = field(default_factory=CancelFlag)
    folder: Path | None = None
    created: float = field(default_factory=time.time)

    def workdir(self) -> Path:
        """This session's private folder for downloads, made on first use."""
        if self.folder is None or not self.folder.is_dir():
            self.folder = Path(tempfile.mkdtemp(prefix="studio-session-"))
        return self.folder

    def file(self, name: str) -> Path:
        # A fresh name per output: a download link never changes under the user.
        stem, dot, ext = name.rpartition(".")
        # Names come from uploads: word characters only, and short enough for any file system.
        stem = re.sub(r"[^\w.-]+", "_", stem).strip("._-")[:MAX_NAME] or "face"
        return self.workdir() / f"{stem}-{uuid.uuid4().hex[:8]}{dot}{ext}"

    def close(self) -> None:
        """Delete the session's files."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def set_target(self, image: np.ndarray | None) -> None:
        self.target, self.target_attrs = image, None

    def reset_face(self) -> None:
        self.latent, self.origin, self.reconstruction, self.tuned, self.edited = None, "", None, None, None


# --------------------------------------------------------------------------- results


@dataclass
class AlignResult:
    faces: list[Face]
    index: int
    annotated: np.ndarray  # the photo with numbered boxes
    aligned: np.ndarray  # the face as the model sees it


@dataclass
class EncodeResult:
    latent: Latent
    reconstruction: np.ndarray
    scores: dict


@dataclass
class OptimiseProgress:
    step: int
    steps: int
    loss: float
    preview: np.ndarray


@dataclass
class EditResult:
    image: np.ndarray
    scores: dict
    composite: np.ndarray | None = None


@dataclass
class Downloads:
    image: Path | None = None
    composite: Path | None = None
    latent: Path | None = None
    video: Path | None = None
    extra: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------------- scores


@torch.no_grad()
def likeness(image: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Perceptual distance (lower is closer) and PSNR of two same-size uint8 faces."""
    a, b = from_uint8(image)[None], from_uint8(reference)[None]
    return {"lpips": round(float(perceptual_distance(True, 128)(a, b)), 4), "psnr_db": round(float(psnr(a, b)), 2)}


def attribute_summary(attrs) -> dict:
    """The few attributes a person reads at a glance: age, gender, top emotion, smile."""
    emotion, p = max(attrs.emotions.items(), key=lambda kv: kv[1])
    gender = "female" if attrs.p_female >= 0.5 else "male"
    return {"age": round(attrs.age, 1), "gender": f"{gender} ({max(attrs.p_female, 1 - attrs.p_female):.0%})",
            "emotion": f"{emotion} ({p:.0%})", "smile": round(attrs.smile, 3)}  # fmt: skip


def analyze_faces(images: list[np.ndarray]) -> list:
    """Face attributes of each image (one at a time: the dlib models inside are not thread-safe)."""
    from .attributes import analyze

    with DLIB_LOCK:
        return analyze(images)


def face_scores(image: np.ndarray, reference: np.ndarray | None = None, reference_attrs=None) -> dict:
    """Age, gender, top emotion of ``image``; its identity distance to ``reference`` (dlib: the
    same person below 0.6) and how close the two look. ``reference_attrs`` saves re-analysing it."""
    from .attributes import identity_distance

    if reference is None:
        return attribute_summary(analyze_faces([image])[0])
    if reference_attrs is None:
        attrs, reference_attrs = analyze_faces([image, reference])
    else:
        attrs = analyze_faces([image])[0]
    distance = identity_distance(attrs, reference_attrs)
    scores = attribute_summary(attrs)
    scores.update({"identity_distance": round(distance, 3), "same_person": bool(distance < IDENTITY_SAME)})
    if reference.shape == image.shape:
        scores.update(likeness(image, reference))
    scores["input"] = attribute_summary(reference_attrs)
    return scores


# --------------------------------------------------------------------------- drawing


def draw_faces(photo: np.ndarray, faces: list[Face], selected: int) -> np.ndarray:
    """The photo with a box and a number tag per face, the selected one highlighted."""
    im = Image.fromarray(photo)
    draw = ImageDraw.Draw(im)
    line = max(2, round(max(photo.shape[:2]) / 300))
    font = ImageFont.load_default(size=max(14, round(max(photo.shape[:2]) / 30)))
    for i in sorted(range(len(faces)), key=lambda i: i == selected):  # the selected face on top
        f = faces[i]
        colour = (255, 196, 0) if i == selected else (80, 160, 255)
        draw.rectangle(f.box, outline=colour, width=line * (2 if i == selected else 1))
        x0, y0, x1, y1 = draw.textbbox((0, 0), str(i), font=font)
        pad = line * 2
        tag = (f.box[0], max(0, f.box[1] - (y1 + 2 * pad)), f.box[0] + x1 + 2 * pad, max(0, f.box[1] - (y1 + 2 * pad)) + y1 + 2 * pad)
        draw.rectangle(tag, fill=colour)
        draw.text((tag[0] + pad, tag[1] + pad - y0 // 2), str(i), fill=(0, 0, 0), font=font)
    return np.asarray(im)


def face_label(index: int, face: Face) -> str:
    return f"face {index} ({face.size} px)"


def upscale_for_display(image: np.ndarray, size: int = 256) -> np.ndarray:
    """Small faces enlarged (Lanczos) for the screen; downloads keep the model's own size."""
    if image.shape[0] >= size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size * image.shape[0] // image.shape[1]), Image.Resampling.LANCZOS))


# --------------------------------------------------------------------------- the studio


class Studio:
    """The steps of the app, one method each; ``model`` names the registry model to use."""

    def __init__(self, model: str | None = None):
        self.model_name = model or default_model()

    @property
    def model(self) -> Model:
        return load_model(self.model_name)

    # ---- 0. sessions and models

    def new_session(self) -> Session:
        return Session(model=self.model_name)

    def use_model(self, session: Session, name: str) -> Model:
        """Switch ``session`` to model ``name`` (codes of another model no longer fit)."""
        choice = next((c for c in model_choices() if c.name == name), None)
        if choice is None:
            raise UserError(f"unknown model {name!r}")
        if not choice.loadable:
            raise UserError(f"model {name} cannot be loaded: {choice.reason}")
        model = load_model(name)
        if session.model != name:
            session.model = name
            session.reset_face()
            session.set_target(None)
            if session.photo is not None and session.aligned is not None:
                session.aligned = align_face(session.photo, session.aligned.face, model.template,
                                             model.resolution, session.aligned.face_index)  # fmt: skip
                session.set_target(self._target(session.aligned.image, model))
        return model  # this session's model only: other people keep theirs

    def session_model(self, session: Session) -> Model:
        return load_model(session.model or self.model_name)

    # ---- 1. upload and align

    def open_photo(self, session: Session, source: str | Path | bytes, name: str | None = None) -> list[Face]:
        """Decode an upload and find its faces (largest first)."""
        photo = load_image(source)
        with DLIB_LOCK:
            faces = find_faces(photo)
        session.photo, session.faces = photo, faces
        session.photo_name = Path(name or (str(source) if not isinstance(source, bytes) else "photo")).stem or "photo"
        session.aligned = None
        session.set_target(None)
        session.reset_face()
        return faces

    def align(self, session: Session, index: int = 0) -> AlignResult:
        """Crop face ``index`` of the session's photo the way the model's training faces were cropped."""
        if session.photo is None:
            raise UserError("upload a photo first")
        model = self.session_model(session)
        face = select_face(session.faces, index)
        session.aligned = align_face(session.photo, face, model.template, model.resolution, face_index=index)
        session.set_target(self._target(session.aligned.image, model))
        session.reset_face()
        return AlignResult(session.faces, index, draw_faces(session.photo, session.faces, index), session.aligned.image)

    @staticmethod
    def _target(image: np.ndarray, model: Model) -> np.ndarray:
        if image.shape[0] == model.resolution:
            return image
        return np.asarray(Image.fromarray(image).resize((model.resolution,) * 2, Image.Resampling.LANCZOS))

    # ---- 2. encode

    def encode(self, session: Session) -> EncodeResult:
        """The encoder's code for the aligned face, its reconstruction and scores."""
        if session.target is None:
            raise UserError("align a face first (tab 1), or start from a random face")
        model = self.session_model(session)
        if model.encoder is None:
            raise UserError(f"model {model.name} has no encoder: use Optimise, which starts from the average face")
        with torch.no_grad():
            wplus = model.encoder.wplus(from_uint8(session.target)[None].to(model.generator.device))
        latent = Latent(latent=wplus.cpu(), model=model.name, space="wplus", alignment=model.template)
        self._set_code(session, latent, "encoder")
        return EncodeResult(latent, session.reconstruction, self.scores(session, session.reconstruction))

    def _set_code(self, session: Session, latent: Latent, origin: str, tuned: Generator | None = None) -> None:
        model = self.session_model(session)
        if session.aligned is not None:  # a downloaded latent can be pasted back into the photo later
            latent.transform = session.aligned.to_dict()
        session.latent, session.origin, session.tuned, session.edited = latent, origin, tuned, None
        session.reconstruction = model.render(latent.wplus(model.n_latent), latent.noise, tuned)

    def scores(self, session: Session, image: np.ndarray) -> dict:
        """Attributes of ``image`` and how it compares with the session's target face."""
        if session.target is None:
            return face_scores(image)
        if session.target_attrs is None:
            session.target_attrs = analyze_faces([session.target])[0]
        return face_scores(image, session.target, session.target_attrs)

    # ---- 3. optimise

    def optimise(
        self,
        session: Session,
        steps: int = DEFAULTS.steps,
        space: Space = "wplus",
        noise: bool = False,
        pti: bool = False,
        callback: Callable[[int, float, np.ndarray], bool | None] | None = None,
        preview_every: int = 10,
    ) -> InversionResult:
        """Refine the code by optimisation, from the current code (else the encoder's guess).

        ``session.cancel`` stops it early; the best code so far is kept.
        """
        if session.target is None:
            raise UserError("align a face first (tab 1): optimisation needs a target photo")
        if int(steps) < 1:
            raise UserError("steps must be at least 1")  # the upper limit is checked by invert
        if space not in ("w", "wplus"):
            raise UserError("latent space must be 'w' or 'wplus'")
        model = self.session_model(session)
        init = session.latent.latent if session.latent is not None and session.origin != "random" else None
        session.cancel.clear()
        result = invert(model.generator, session.target, model.encoder, init=init, steps=int(steps), space=space,
                        optimize_noise=bool(noise), pti=bool(pti), callback=callback, cancel=session.cancel,
                        preview_every=preview_every)  # fmt: skip
        latent = result.latent(model.name, model.template)
        self._set_code(session, latent, "optimised", result.generator)
        session.reconstruction = to_uint8(result.image[0])
        return result

    def optimise_stream(self, session: Session, steps: int = DEFAULTS.steps, space: Space = "wplus", noise: bool = False,
                        pti: bool = False, preview_every: int = 10) -> Iterator[OptimiseProgress | InversionResult]:  # fmt: skip
        """:meth:`optimise` as a stream: progress every ``preview_every`` steps, then the result.

        The optimisation runs in a worker thread so that a UI can show previews while it runs.
        """
        events: queue.Queue = queue.Queue()
        total = int(steps) + (DEFAULTS.pti_steps if pti else 0)

        def report(step: int, loss: float, preview: np.ndarray) -> None:
            events.put(OptimiseProgress(step, total, loss, preview))

        def work() -> None:
            try:
                events.put(self.optimise(session, steps, space, noise, pti, report, preview_every))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises
                events.put(exc)

        worker = threading.Thread(target=work, name="studio-optimise", daemon=True)
        worker.start()
        try:
            while True:
                item = events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, InversionResult):
                    return
        finally:
            # A consumer that goes away (closed tab) stops the work too.
            session.cancel.set()
            worker.join()

    def stop(self, session: Session) -> None:
        session.cancel.set()

    # ---- 4. edit and paste back

    def directions(self, session: Session | None = None) -> dict[str, Direction]:
        return (self.session_model(session) if session else self.model).directions

    def edit(
        self,
        session: Session,
        strengths: dict[str, float],
        conditioning: list[str] | tuple[str, ...] = (),
        layers: tuple[int, int] | None = None,
        paste: bool = False,
    ) -> EditResult:
        """The current face moved along edit directions; optionally pasted into the photo."""
        model = self.session_model(session)
        if session.latent is None:
            raise UserError("encode a face first (tab 2), or start from a random face")
        if not model.directions:
            raise UserError(model.directions_note or f"model {model.name} has no edit directions yet")
        wplus = apply_edits(session.latent.wplus(model.n_latent).to(model.generator.device), model.directions,
                            strengths, conditioning, layers)  # fmt: skip
        return self._show(session, model, wplus, paste)

    def paste(self, session: Session, face: np.ndarray | None = None) -> np.ndarray:
        """``face`` (default: the last edit) blended back into the original photo."""
        face = face if face is not None else session.edited
        if face is None:
            raise UserError("edit the face first")
        if session.photo is None or session.aligned is None:
            raise UserError("paste back needs an uploaded photo: this face did not come from one")
        return paste_back(session.photo, session.aligned, face)

    # ---- 5. talk

    def talk_status(self, session: Session | None = None) -> str:
        """Empty when the model can make talking-head videos; otherwise why not."""
        from .talking_head import REFIT_COMMAND, talk_map_path

        name = (session.model if session is not None else "") or self.model_name
        if not talk_map_path(name).is_file():
            return (f"Model {name} cannot make talking-head videos yet: its talk map is missing "
                    f"(fit it with `{REFIT_COMMAND.format(name=name)}`).")  # fmt: skip
        return ""

    def talk(self, session: Session, text: str = "", voice: str = "en-us", wpm: int = 160,
             audio: str | Path | None = None, paste: bool = False, method: str | None = None) -> Path:  # fmt: skip
        """A talking-head video (mp4) of the current face saying ``text`` or lip-syncing ``audio``;
        ``paste``: every frame put back into the uploaded photo; ``method``: how the mouth moves
        (:data:`pipeline.talk.METHODS`; None: phoneme timings for text, the AT-net for audio)."""
        from .talking_head import load_model_talk_map, talk_video

        if session.latent is None:
            raise UserError("encode a face first (tab 2), or start from a random face")
        text = (text or "").strip()
        if not text and audio is None:
            raise UserError("type something to say, or upload an audio clip")
        model = self.session_model(session)
        talk_map = load_model_talk_map(model.name, model.generator)
        target = None
        if paste:
            if session.photo is None or session.aligned is None:
                raise UserError("paste back needs an uploaded photo: this face did not come from one")
            target = (session.photo, session.aligned)
        result = talk_video(session.tuned or model.generator, session.latent.wplus(model.n_latent), talk_map,
                            session.file("talk.mp4"), text=text or None, audio=audio, voice=voice, wpm=int(wpm),
                            method=method, noise=session.latent.noise, paste=target, model_name=model.name,
                            dlib_lock=DLIB_LOCK)  # fmt: skip
        return result.path

    # ---- 6. mix

    def mix(
        self,
        session: Session,
        other: Latent,
        amount: float = 0.5,
        groups: list[str] | tuple[str, ...] = (),
    ) -> np.ndarray:
        """Interpolate the current face towards ``other`` by ``amount`` (0: this face, 1: the other),
        then take the named layer groups (coarse / middle / fine) wholly from the other face."""
        model = self.session_model(session)
        if session.latent is None:
            raise UserError("encode a face first (tab 2), or start from a random face")
        a = session.latent.wplus(model.n_latent).to(model.generator.device)
        return model.render(mix_codes(a, other.wplus(model.n_latent), amount, groups))

    def mix_identity(self, session: Session, other: Latent, mixed: np.ndarray) -> dict[str, float | None]:
        """dlib identity distance of a mix to face A (the current code) and to face B (same person below 0.6);
        None where no face is found."""
        from .attributes import identity_distance

        model = self.session_model(session)
        # Both rendered the way the mix is (shared noise, shipped generator): at 0 the mix is A exactly.
        a = model.render(session.latent.wplus(model.n_latent))
        b = model.render(other.wplus(model.n_latent))
        found = analyze_faces([mixed, a, b])
        out: dict[str, float | None] = {}
        for name, ref in (("to_a", found[1]), ("to_b", found[2])):
            ok = found[0].identity is not None and ref.identity is not None
            out[name] = round(identity_distance(found[0], ref), 3) if ok else None
        return out

    def other_face(self, session: Session, source: str | Path | None = None, seed: int | None = None) -> Latent:
        """The second face for mixing: a photo (its largest face, encoded), a latent file, or a random face."""
        model = self.session_model(session)
        if source is None:
            return self.random_latent(model, seed if seed is not None else int(time.time()))
        source = Path(source)
        if source.suffix == ".safetensors":
            return self.read_latent(session, source)
        other = Session(model=model.name)
        self.open_photo(other, source)
        self.align(other, 0)
        return self.encode(other).latent

    # ---- 7. create: expression transfer, edit to a target, localized edits, augmentation, showcase

    def target_names(self, session: Session | None = None) -> list[str]:
        """Directions whose attribute the classifiers read back: the ones an edit can aim at a value of."""
        from .attributes import SCORE_NAMES

        return [n for n in self.directions(session) if n in SCORE_NAMES]

    def _face(self, session: Session) -> tuple[Model, torch.Tensor]:
        model = self.session_model(session)
        if session.latent is None:
            raise UserError("encode a face first (tab 2), or start from a random face")
        if not model.directions:
            raise UserError(model.directions_note or f"model {model.name} has no edit directions yet")
        return model, session.latent.wplus(model.n_latent).to(model.generator.device)

    def _show(self, session: Session, model: Model, wplus: torch.Tensor, paste: bool = False,
              image: np.ndarray | None = None) -> EditResult:  # fmt: skip
        """The edited face (rendered from ``wplus`` unless given) with its scores, and pasted back if asked."""
        image = model.render(wplus, session.latent.noise, session.tuned) if image is None else image
        session.edited = image
        result = EditResult(image, self.scores(session, image))
        if paste:
            result.composite = self.paste(session, image)
        return result

    def transfer(self, session: Session, other: Latent, mode: str = "replace", strength: float = 1.0) -> EditResult:
        """The current face with ``other``'s expression (emotion, smile and mouth directions only)."""
        from .expression import transfer_expression

        model, a = self._face(session)
        moved = transfer_expression(a, other.wplus(model.n_latent), model.directions, model.w_mean, mode, strength)
        result = self._show(session, model, moved)
        result.scores["expression_source"] = face_scores(model.render(other.wplus(model.n_latent)))
        return result

    def edit_to_target(self, session: Session, name: str, value: float, tolerance: float | None = None,
                       identity_limit: float = IDENTITY_SAME, paste: bool = False):  # fmt: skip
        """Step the current face along ``name``'s direction until the classifiers read ``value``.

        Returns the :class:`pipeline.target_edit.TargetResult` and the :class:`EditResult` of
        the face it stopped at (the closest one when the target cannot be reached)."""
        from .target_edit import edit_to_target

        model, wplus = self._face(session)
        result = edit_to_target(session.tuned or model.generator, wplus, model.directions, name, float(value), tolerance,
                                identity_limit, noise=session.latent.noise, measure=analyze_faces)  # fmt: skip
        return result, self._show(session, model, result.wplus, paste)

    def localized_edit(self, session: Session, strengths: dict[str, float], region: str,
                       layers: tuple[int, int] | None = None, paste: bool = False) -> EditResult:  # fmt: skip
        """An edit kept to one region of the face (eyes, brows, mouth, nose, face, hair), blended in image space."""
        from .regions import blend, region_mask

        model, wplus = self._face(session)
        before = model.render(wplus, session.latent.noise, session.tuned)
        after = model.render(apply_edits(wplus, model.directions, strengths, (), layers), session.latent.noise, session.tuned)
        with DLIB_LOCK:
            from .attributes import analyze

            landmarks = analyze([before], identity=False)[0].landmarks
        return self._show(session, model, wplus, paste, image=blend(before, after, region_mask(landmarks, before.shape[0], region)))

    def augment(self, session: Session, n: int = 16, seed: int = 0) -> tuple[Path, dict]:
        """A zip of ``n`` labelled variants of the current face (labels.csv inside) and the label agreement."""
        from .attributes import analyze
        from .augment import label_agreement, make_variants, write_zip

        model, wplus = self._face(session)

        def measure(images):
            with DLIB_LOCK:
                return analyze(images, identity=False)

        variants, base = make_variants(session.tuned or model.generator, wplus, model.directions, int(n), int(seed), measure)
        original = model.render(wplus, session.latent.noise, session.tuned)
        path = write_zip(session.file(f"{session.photo_name}-variants.zip"), variants, base, original, model.name)
        return path, label_agreement(variants, base)

    def showcase(self, session: Session, sweep: list[str] | tuple[str, ...] = ("age",), span: tuple[float, float] = (-2.0, 2.0),
                 frames: int = 24, sheet: list[str] | tuple[str, ...] = ()) -> Downloads:  # fmt: skip
        """A sweep along ``sweep`` (GIF and MP4), a before/after and a contact sheet of the current face."""
        from .showcase import export_showcase

        model, wplus = self._face(session)
        folder = session.file(f"{session.photo_name}-showcase.d")  # a fresh folder per export
        files = export_showcase(session.tuned or model.generator, wplus, model.directions, folder, list(sweep) or ["age"],
                                span, int(frames), sheet=list(sheet), model=model.name, noise=session.latent.noise)  # fmt: skip
        return Downloads(image=files["before_after"], video=files["mp4"], extra={"gif": files["gif"], "sheet": files["sheet"]})

    def batch(self, session: Session, photos: list[str | Path], strengths: dict[str, float]) -> tuple[Path, list]:
        """Each photo's largest face edited and pasted back; a zip of the results with ``report.csv``
        (ok, or why a photo failed) and the report's rows. A bad photo never stops the others."""
        import zipfile

        from . import limits
        from .batch import Editor, run_batch

        model = self.session_model(session)
        if not photos:
            raise UserError("upload some photos first")
        if len(photos) > limits.batch_photos():
            raise UserError(f"{len(photos)} photos; one batch takes at most {limits.batch_photos()} ({limits.BATCH_PHOTOS.env})")
        if not model.directions:
            raise UserError(model.directions_note or f"model {model.name} has no edit directions yet")
        if model.encoder is None:
            raise UserError(f"model {model.name} has no encoder to find each photo's code with")
        work = session.file("batch.d")
        folder = work / "photos"
        folder.mkdir(parents=True)
        for i, photo in enumerate(photos):
            name = re.sub(r"[^\w.-]+", "_", Path(photo).name).strip("._-")[:MAX_NAME] or f"photo{i}"
            shutil.copyfile(photo, folder / (name if not (folder / name).exists() else f"{i}-{name}"))
        editor = Editor(model.generator, model.encoder, model.template, model.directions, strengths, model.name)
        with DLIB_LOCK:
            rows = run_batch(folder, work / "edited", editor)
        archive = session.file(f"{session.photo_name}-batch.zip")
        with zipfile.ZipFile(archive, "w") as z:
            for path in sorted((work / "edited").rglob("*")):
                if path.is_file():
                    z.write(path, path.relative_to(work / "edited").as_posix())
        return archive, rows

    # ---- random faces and latent files

    @staticmethod
    def random_latent(model: Model, seed: int) -> Latent:
        w = random_w(model.generator, seed, TRUNCATION, model.w_mean)
        return Latent(latent=w.cpu(), model=model.name, space="w", alignment=model.template)

    def random_face(self, session: Session, seed: int | None = None) -> np.ndarray:
        """Start over from a random face of the model (no photo: nothing to paste back into)."""
        model = self.session_model(session)
        seed = int(seed) if seed is not None else int.from_bytes(os.urandom(4), "little")
        session.photo, session.faces, session.aligned = None, [], None
        self._set_code(session, self.random_latent(model, seed), "random")
        session.set_target(session.reconstruction)
        return session.reconstruction

    def read_latent(self, session: Session, path: str | Path) -> Latent:
        model = self.session_model(session)
        latent = load_latent_for(path, model.generator, model.name)
        if latent.latent.shape[0] != 1:
            raise UserError(f"{Path(path).name} holds {latent.latent.shape[0]} codes; the studio edits one face")
        return latent

    def use_latent_file(self, session: Session, path: str | Path) -> np.ndarray:
        """Continue from a saved latent file (a PTI-tuned generator beside it is not carried over)."""
        self._set_code(session, self.read_latent(session, path), "file")
        if session.target is None:
            session.set_target(session.reconstruction)
        return session.reconstruction

    # ---- examples and warm-up

    def example_face(self, folder: Path, seed: int = 0, size: int = 256) -> Path | None:
        """A generated face saved as a photo (enlarged so the detector finds it), or None when
        the model's face is not recognisable as one."""
        model = self.model
        # Named by the weights too: retrained weights under the same name get a fresh example.
        digest = hashlib.sha1(model.generator.input.input.detach().cpu().numpy().tobytes()).hexdigest()[:10]
        path = folder / f"{model.name}-{digest}-seed{seed}.png"
        if not path.is_file():
            face = model.render(self.random_latent(model, seed).wplus(model.n_latent))
            big = np.asarray(Image.fromarray(face).resize((size, size), Image.Resampling.LANCZOS))
            with DLIB_LOCK:
                found = detect_faces(big, cnn_fallback=False)
            if not found:
                return None
            folder.mkdir(parents=True, exist_ok=True)
            save_image(big, path, model=model.name)
        return path

    def warm_up(self, photo: str | Path) -> None:
        """Run every model once (detector, landmarks, encoder, attributes) so the first user does not wait."""
        session = self.new_session()
        try:
            self.open_photo(session, photo)
            self.align(session, 0)
            if self.model.encoder is not None:
                self.encode(session)
        finally:
            session.close()

    # ---- downloads

    def save_latent(self, session: Session) -> Path:
        if session.latent is None:
            raise UserError("there is no latent code yet")
        return save_latent(session.file(f"{session.photo_name}-latent.safetensors"), session.latent)

    def save_image(self, session: Session, image: np.ndarray, kind: str) -> Path:
        return save_image(image, session.file(f"{session.photo_name}-{kind}.png"), model=self.session_model(session).name)
