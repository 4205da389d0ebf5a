"""dlib's face detectors, landmark predictors and identity network, loaded once.

The model files come from the ``face_recognition_models`` package. Its ``__init__``
imports ``pkg_resources`` (gone from new setuptools), so the files are located
through the import system instead of importing the package.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import dlib

from ..errors import UserError

MODEL_FILES = {
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "identity": "dlib_face_recognition_resnet_model_v1.dat",
    "cnn_detector": "mmod_human_face_detector.dat",
}


def model_path(kind: str) -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the face_recognition_models package is missing: run the setup script")
    path = Path(spec.submodule_search_locations[0]) / "models" / MODEL_FILES[kind]
    if not path.exists():
        raise UserError(f"dlib model file missing: {path}")
    return path


@cache
def hog_detector() -> dlib.fhog_object_detector:
    return dlib.get_frontal_face_detector()


@cache
def cnn_detector() -> dlib.cnn_face_detection_model_v1:
    return dlib.cnn_face_detection_model_v1(str(model_path("cnn_detector")))


@cache
def landmarks68() -> dlib.shape_predictor:
    return dlib.shape_predictor(str(model_path("landmarks68")))


@cache
def landmarks5() -> dlib.shape_predictor:
    return dlib.shape_predictor(str(model_path("landmarks5")))


@cache
def identity_net() -> dlib.face_recognition_model_v1:
    return dlib.face_recognition_model_v1(str(model_path("identity")))
