"""How a face reads: attributes at a glance, identity against the input and likeness; and the lock
that keeps dlib's models to one thread at a time."""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np
import torch

from ..faces.attributes import IDENTITY_SAME
from ..models.perceptual import perceptual_distance, psnr
from ..models.render import from_uint8

# dlib's detectors and networks keep scratch state: one thread at a time may use them.
DLIB_LOCK = threading.RLock()


LIKENESS_SIZE = 128  # faces are compared at this size


@lru_cache(maxsize=8)
def _reference_features(pixels: bytes, shape: tuple[int, ...]) -> list[torch.Tensor]:
    """The perceptual features of a reference face, computed once: every edit of a session is
    compared with the same target, and its features are half the cost of the comparison."""
    reference = from_uint8(np.frombuffer(pixels, np.uint8).reshape(shape))[None]
    return perceptual_distance(True, LIKENESS_SIZE).raw_features(reference)


@torch.no_grad()
def likeness(image: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Perceptual distance (lower is closer) and PSNR of two same-size uint8 faces."""
    a, b = from_uint8(image)[None], from_uint8(reference)[None]
    net = perceptual_distance(True, LIKENESS_SIZE)
    reference_features = _reference_features(np.ascontiguousarray(reference, np.uint8).tobytes(), reference.shape)
    distance = net.distance_from_features(net.raw_features(a), reference_features)
    return {"lpips": round(float(distance), 4), "psnr_db": round(float(psnr(a, b)), 2)}


def attribute_summary(attrs) -> dict:
    """The few attributes a person reads at a glance: age, gender, top emotion, smile."""
    emotion, p = max(attrs.emotions.items(), key=lambda kv: kv[1])
    gender = "female" if attrs.p_female >= 0.5 else "male"
    return {"age": round(attrs.age, 1), "gender": f"{gender} ({max(attrs.p_female, 1 - attrs.p_female):.0%})",
            "emotion": f"{emotion} ({p:.0%})", "smile": round(attrs.smile, 3)}  # fmt: skip


def analyze_faces(images: list[np.ndarray]) -> list:
    """Face attributes of each image (one at a time: the dlib models inside are not thread-safe)."""
    from ..faces.attributes import analyze

    with DLIB_LOCK:
        return analyze(images)


def face_scores(image: np.ndarray, reference: np.ndarray | None = None, reference_attrs=None) -> dict:
    """Age, gender, top emotion of ``image``; its identity distance to ``reference`` (dlib: the
    same person below 0.6) and how close the two look. ``reference_attrs`` saves re-analysing it."""
    from ..faces.attributes import identity_distance

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
