"""One user's work (:class:`Session`) and what the studio's steps hand back."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..faces.align import AlignedFace
from ..faces.detection import Face
from ..latent.files import Latent
from ..models.generator import Generator
from .models import Model, default_model, load_model

MAX_NAME = 80  # characters of an upload's name kept in download names


def safe_name(name: str) -> str:
    """An upload's name made safe for any file system: word characters only, and short."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._-")[:MAX_NAME]


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
    edited: np.ndarray | None = None  # the last edit as the model renders it
    edited_face: np.ndarray | None = None  # ... and at the photo's resolution, when there is a photo
    photo_face: np.ndarray | None = None  # the aligned face cut from the photo at its resolution, once
    photo_face_attrs: object | None = None  # its face attributes, measured once
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
        stem = safe_name(stem) or "face"
        return self.workdir() / f"{stem}-{uuid.uuid4().hex[:8]}{dot}{ext}"

    def close(self) -> None:
        """Delete the session's files."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def set_target(self, image: np.ndarray | None) -> None:
        self.target, self.target_attrs = image, None
        self.photo_face = self.photo_face_attrs = None  # a new alignment: cut and measured again

    def reset_face(self) -> None:
        self.latent, self.origin, self.reconstruction, self.tuned = None, "", None, None
        self.edited = self.edited_face = None


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
    image: np.ndarray  # the edited face as the model renders it (the model view)
    scores: dict
    composite: np.ndarray | None = None  # the whole photo with the edit, when asked for
    face: np.ndarray | None = None  # the edited face at the photo's resolution, when there is a photo


@dataclass
class Downloads:
    image: Path | None = None
    composite: Path | None = None
    latent: Path | None = None
    video: Path | None = None
    extra: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------------- the steps' common ground


class Steps:
    """What every step of the studio needs: the default model's name and each session's model."""

    def __init__(self, model: str | None = None):
        self.model_name = model or default_model()

    @property
    def model(self) -> Model:
        return load_model(self.model_name)

    def new_session(self) -> Session:
        return Session(model=self.model_name)

    def session_model(self, session: Session) -> Model:
        return load_model(session.model or self.model_name)
