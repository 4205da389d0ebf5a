"""Face attributes of aligned face crops: age, gender, emotion, expression, head pose, identity.

Works on crops of any size where the face fills most of the frame (the embedded generator's
64 px UTKFace-style faces, 1024 px FFHQ faces, aligned uploads). Each crop is brought to
256-512 px, the face and its landmarks are found with dlib (HOG detector, 5- and 68-point
predictors), and the networks run batched on chips cut from the 5 landmarks:

- age and gender: dlib's age and gender networks (Cydral Technology, CC0) as ONNX, on 64 and
  32 px colour chips;
- emotion: the FER2013 mini-Xception (oarriaga/face_classification, MIT) on a 64 px grey chip,
  ported to PyTorch (:mod:`pipeline.models.mini_xception`);
- identity: dlib's 128-d face ResNet on a 150 px chip (same person below a distance of 0.6);
- smile, mouth and eye opening, yaw/pitch/roll: geometry of the 68 landmarks
  (:mod:`pipeline.faces.face_geometry`).

When the detector finds no face (it misses a few small generated faces), the crop is read with
a fixed geometry instead of failing: the 5 points at their median place in UTKFace crops and
the 68-point predictor run in the median UTKFace face box (``face_found`` is then False).
On UTKFace both give the same age error as detected faces; on crops framed otherwise (FFHQ)
the fallback is rougher.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import dlib
import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from safetensors.torch import load_file

from ..errors import UserError
from ..models import dlib_models
from ..models.mini_xception import EMOTIONS, MiniXception
from . import face_geometry
from .detection import WEAK_SCORE, detect_faces, landmarks_for_box

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights" / "attributes"
AGE_BINS = np.array([0.25, *range(1, 81)], dtype=np.float32)  # years; the age net's 81 classes
DLIB_MEAN_RGB = np.array([122.782, 117.001, 104.298], dtype=np.float32)  # dlib's input_rgb_image means
FEMALE = 0  # column of the gender net's output (checked on UTKFace labels: column 1 is male)
AGE_CHIP, GENDER_CHIP, IDENTITY_CHIP, EMOTION_CHIP = 64, 32, 150, 64
CHIP_PADDING = 0.2  # what the age and gender nets were trained with
IDENTITY_PADDING = 0.25  # dlib's default for the face ResNet
IDENTITY_SAME = 0.6  # dlib descriptor distance below which two faces are the same person
# FER2013 faces are tight face boxes; wider chips also run off UTKFace-style crops into black
# borders (happy vs smile correlation on UTKFace: 0.71 at 0.1, 0.63 at 0.3, 0.45 at 0.7).
EMOTION_PADDING = 0.1
WORK_MIN, WORK_MAX = 256, 512  # small crops are enlarged for the detector; big ones reduced for speed

# Fixed geometry for crops without a detection, as fractions of the crop's width and height:
# median dlib 5-point landmarks and HOG face box of 200 UTKFace crops (mirror-symmetric).
FALLBACK_POINTS5 = np.array([[0.76, 0.30], [0.605, 0.31], [0.22, 0.30], [0.375, 0.31], [0.49, 0.59]])
FALLBACK_BOX = (0.075, 0.075, 0.97, 0.97)

# Names of the scores returned by :func:`scores`, also the names of the edit directions.
SCORE_NAMES = ("age", "gender", "smile", "mouth_open", "eyes_open", "yaw", "pitch", *EMOTIONS)
# ... and what is measured but not an edit of its own: kept by every edit unless asked.
MEASURED_NAMES = (*SCORE_NAMES, "skin", "facial_hair")


@dataclass
class FaceAttributes:
    """Attributes of the main face of one crop."""

    age: float  # years
    p_female: float
    emotions: dict[str, float]  # the 7 FER2013 classes, summing to 1
    smile: float  # mouth width / inter-ocular distance
    mouth_open: float  # inner-lip gap / mouth width
    eyes_open: float  # eye aspect ratio
    yaw: float  # degrees, see pipeline.faces.face_geometry for the signs
    pitch: float
    roll: float
    identity: np.ndarray | None = field(repr=False)  # (128,) float32; None if not asked for
    landmarks: np.ndarray = field(repr=False)  # (68, 2) float32, pixels of the input crop
    face_found: bool = True  # False: read with the fixed fallback geometry
    skin: float = float("nan")  # cheek luminance, 0..255 (see face_geometry.skin_luminance)
    facial_hair: float = float("nan")  # upper lip and chin darker than the cheeks, 0..255 (face_geometry.facial_hair)

    def to_dict(self) -> dict:
        out = {"face_found": self.face_found, **scores(self)}
        out["p_female"] = out.pop("gender")
        out["roll"] = self.roll
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


@dataclass
class LocatedFace:
    """Where the face of a crop is, on the working copy that chips are cut from."""

    work: np.ndarray  # the crop at working size, RGB uint8
    scale: float  # work pixels per input pixel
    shape5: dlib.full_object_detection
    landmarks: np.ndarray  # (68, 2) in work pixels
    found: bool  # False: the fixed fallback geometry


@cache
def _onnx(name: str) -> ort.InferenceSession:
    path = WEIGHTS_DIR / name
    if not path.exists():
        raise UserError(f"attribute model missing: {path}")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@cache
def emotion_net() -> MiniXception:
    path = WEIGHTS_DIR / "emotion_mini_xception.safetensors"
    if not path.exists():
        raise UserError(f"attribute model missing: {path}")
    net = MiniXception().eval()
    net.load_state_dict(load_file(str(path)))
    net.requires_grad_(False)
    return net


def _to_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise UserError(f"face crops must be uint8 RGB images, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise UserError(f"face crops must be (H, W, 3) RGB images, got shape {image.shape}")
    return np.ascontiguousarray(image[..., :3])


def _working_copy(image: np.ndarray) -> tuple[np.ndarray, float]:
    side = max(image.shape[:2])
    scale = WORK_MIN / side if side < WORK_MIN else min(1.0, WORK_MAX / side)
    if scale == 1.0:
        return image, 1.0
    h, w = (round(n * scale) for n in image.shape[:2])
    resample = Image.BICUBIC if scale > 1 else Image.LANCZOS
    return np.asarray(Image.fromarray(image).resize((w, h), resample)), scale


def locate(image: np.ndarray) -> LocatedFace:
    """The main face of a crop with its 5- and 68-point landmarks, or the fixed fallback geometry."""
    work, scale = _working_copy(_to_rgb(image))
    faces = detect_faces(work, cnn_fallback=False)  # the fallback below is cheaper than the CNN detector
    if faces:
        # Confident hits first: a weak background hit can be larger than the face (seen on a JPEG
        # copy of the astronaut photo). A lone weak hit is kept: on 64 px crops it is the face.
        face = max(faces, key=lambda f: (f.score >= WEAK_SCORE, f.size))
        shape5 = dlib_models.landmarks5()(work, dlib.rectangle(*face.box))
        return LocatedFace(work, scale, shape5, face.landmarks, True)
    h, w = work.shape[:2]
    box = tuple(round(f * n) for f, n in zip(FALLBACK_BOX, (w, h, w, h)))
    points = [dlib.point(round(x * w), round(y * h)) for x, y in FALLBACK_POINTS5]
    shape5 = dlib.full_object_detection(dlib.rectangle(*box), points)
    return LocatedFace(work, scale, shape5, landmarks_for_box(work, box), False)


def face_chip(located: LocatedFace, size: int, padding: float) -> np.ndarray:
    """A (size, size, 3) chip aligned on the 5 landmarks (dlib's face chip geometry)."""
    return dlib.get_face_chip(located.work, located.shape5, size=size, padding=padding)


def _dlib_input(chips: list[np.ndarray]) -> np.ndarray:
    x = (np.stack(chips).astype(np.float32) - DLIB_MEAN_RGB) / 256.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _with_mirror(chips: list[np.ndarray]) -> list[np.ndarray]:
    """The chips, then each mirrored left to right."""
    return [*chips, *(np.ascontiguousarray(c[:, ::-1]) for c in chips)]


def _mirror_mean(probs: np.ndarray) -> np.ndarray:
    """Probabilities of :func:`_with_mirror`'s chips averaged over each chip and its mirror image.

    A face and its mirror image are the same age: averaged, the age net's reading of one face
    varies about half as much (12 edited photos vs their mirrors: 6.9 years apart on average)."""
    half = len(probs) // 2
    return (probs[:half] + probs[half:]) / 2


def predict_age(chips: list[np.ndarray]) -> np.ndarray:
    """Expected age in years from 64 px chips (padding 0.2), over each chip and its mirror image."""
    probs = _onnx("age-v1.onnx").run(None, {"images": _dlib_input(_with_mirror(chips))})[0]
    return _mirror_mean(probs) @ AGE_BINS


def predict_female(chips: list[np.ndarray]) -> np.ndarray:
    """P(female) from 32 px chips (padding 0.2), over each chip and its mirror image."""
    return _mirror_mean(_onnx("gender-v1.onnx").run(None, {"images": _dlib_input(_with_mirror(chips))})[0])[:, FEMALE]


def predict_emotions(chips: list[np.ndarray]) -> np.ndarray:
    """(N, 7) emotion probabilities (order of ``EMOTIONS``) from 64 px RGB chips."""
    grey = np.stack(chips).astype(np.float32) @ face_geometry.LUMA_WEIGHTS  # luma, as FER2013 was made
    x = torch.from_numpy((grey / 255.0 - 0.5) * 2.0)[:, None]
    net = emotion_net()  # loaded outside inference mode: its weights also serve gradients (gradient directions)
    with torch.inference_mode(), _one_thread():
        return torch.softmax(net(x), dim=1).numpy()


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run PyTorch on one thread: the emotion net is too small to gain from more, and on a busy
    CPU their hand-offs cost seconds (4 faces on a loaded 2-core machine: 2.0 s on 2 threads,
    0.1 s on 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def identity_descriptors(chips: list[np.ndarray]) -> np.ndarray:
    """(N, 128) dlib face descriptors from 150 px chips (padding 0.25)."""
    vectors = dlib_models.identity_net().compute_face_descriptor(chips)
    return np.asarray([np.asarray(v) for v in vectors], dtype=np.float32)


def identity_distance(a: FaceAttributes | np.ndarray, b: FaceAttributes | np.ndarray) -> float:
    """Euclidean distance of two identity descriptors: below :data:`IDENTITY_SAME` (0.6) means the same person."""
    va = a.identity if isinstance(a, FaceAttributes) else np.asarray(a)
    vb = b.identity if isinstance(b, FaceAttributes) else np.asarray(b)
    if va is None or vb is None:
        raise UserError("no identity descriptor: analyze the faces with identity=True")
    return float(np.linalg.norm(va.astype(np.float64) - vb.astype(np.float64)))


def analyze(
    images: np.ndarray | Sequence[np.ndarray], batch_size: int = 64, identity: bool = True
) -> list[FaceAttributes]:
    """Attributes of the main face of each crop: a list of (H, W, 3) uint8 images or an (N, H, W, 3) array.

    ``identity=False`` skips the identity descriptor, most of the cost (dlib's ResNet runs without
    BLAS), when only the scores are needed.
    """
    if isinstance(images, np.ndarray) and images.ndim != 4:
        raise UserError("analyze takes a batch: a list of images or an (N, H, W, 3) array")
    crops = list(images)
    out: list[FaceAttributes] = []
    for start in range(0, len(crops), batch_size):
        located = [locate(crop) for crop in crops[start : start + batch_size]]
        ages = predict_age([face_chip(f, AGE_CHIP, CHIP_PADDING) for f in located])
        female = predict_female([face_chip(f, GENDER_CHIP, CHIP_PADDING) for f in located])
        emotions = predict_emotions([face_chip(f, EMOTION_CHIP, EMOTION_PADDING) for f in located])
        identities = (
            identity_descriptors([face_chip(f, IDENTITY_CHIP, IDENTITY_PADDING) for f in located])
            if identity
            else [None] * len(located)
        )
        for i, f in enumerate(located):
            lm = f.landmarks
            skin = face_geometry.skin_luminance(f.work, lm)
            yaw, pitch, roll = face_geometry.head_pose(lm)
            out.append(FaceAttributes(
                age=float(ages[i]), p_female=float(female[i]),
                emotions={name: float(p) for name, p in zip(EMOTIONS, emotions[i])},
                smile=face_geometry.smile(lm), mouth_open=face_geometry.mouth_open(lm),
                eyes_open=face_geometry.eye_aspect_ratio(lm), yaw=yaw, pitch=pitch, roll=roll,
                identity=identities[i], landmarks=(lm / f.scale).astype(np.float32), face_found=f.found,
                skin=skin, facial_hair=face_geometry.facial_hair(f.work, lm, skin),
            ))  # fmt: skip
    return out


def scores(attrs: FaceAttributes) -> dict[str, float]:
    """Flat scores named as the edit directions (``SCORE_NAMES``), then skin tone and facial hair; gender is P(female)."""
    flat = {"age": attrs.age, "gender": attrs.p_female, "smile": attrs.smile, "mouth_open": attrs.mouth_open,
            "eyes_open": attrs.eyes_open, "yaw": attrs.yaw, "pitch": attrs.pitch, "skin": attrs.skin,
            "facial_hair": attrs.facial_hair}  # fmt: skip
    flat.update(attrs.emotions)
    return {name: float(flat[name]) for name in MEASURED_NAMES}
