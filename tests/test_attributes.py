"""Face attributes: the models read real faces correctly, the geometry has the documented signs.

Test faces are UTKFace crops from tests/data/utkface_mini (100 px; age and gender from the
file names and labels.csv, noted at each use) and the NASA astronaut portrait (Eileen Collins).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import load_file

from pipeline.commands import attributes as attributes_command
from pipeline.errors import UserError
from pipeline.faces import attributes as A
from pipeline.faces import face_geometry as fg
from pipeline.models.mini_xception import EMOTIONS, max_pool_same

DATA = Path(__file__).parent / "data"
UTK = DATA / "utkface_mini"
BABY_BOY = "1_0_2_20161219194721851.jpg.chip.jpg"  # 1 year, male
GIRL = "9_1_1_20170117105556810.jpg.chip.jpg"  # 9 years, female, smiling
MAN_23 = "23_0_0_20170117144622811.jpg.chip.jpg"  # 23 years, male
MAN_40 = "40_0_2_20170113190426313.jpg.chip.jpg"  # 40 years, male, neutral
WOMAN_32 = "32_1_4_20170105165021555.jpg.chip.jpg"  # 32 years, female, broad smile
WOMAN_27 = "27_1_3_20170119194359962.jpg.chip.jpg"  # 27 years, female, turned to the image's right
WOMAN_82 = "82_1_0_20170110141329969.jpg.chip.jpg"  # 82 years, female
MAN_70 = "70_0_0_20170120140346584.jpg.chip.jpg"  # 70 years, male
FILES = [BABY_BOY, GIRL, MAN_23, MAN_40, WOMAN_32, WOMAN_27, WOMAN_82, MAN_70]


def _load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _shrink(image: np.ndarray, size: int = 64) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def faces() -> dict[str, np.ndarray]:
    images = {name: _load(UTK / name) for name in FILES}
    astronaut = _load(DATA / "faces" / "astronaut.png")
    images.update({
        "astronaut": astronaut,
        "astronaut jpeg": _jpeg(astronaut, 60),
        "astronaut flipped": astronaut[:, ::-1],
        "woman 27 flipped": images[WOMAN_27][:, ::-1],
        "man 40 at 64 px": _shrink(images[MAN_40]),
        "woman 82 at 64 px": _shrink(images[WOMAN_82]),
        "blank": np.full((64, 64, 3), 128, np.uint8),
    })  # fmt: skip
    return images


@pytest.fixture(scope="module")
def attrs(faces) -> dict[str, A.FaceAttributes]:
    return dict(zip(faces, A.analyze(list(faces.values()))))  # one batch: the models load and run once


def test_batch_gives_one_result_per_image_of_any_size(faces, attrs):
    assert len(attrs) == len(faces)
    stack = np.stack([faces[MAN_40], faces[WOMAN_32], faces[MAN_40]])  # an (N, H, W, 3) array works too
    out = A.analyze(stack, batch_size=2, identity=False)  # scores only
    assert len(out) == 3 and out[0].identity is None
    with pytest.raises(UserError):
        A.identity_distance(out[0], out[1])
    assert out[0].age == pytest.approx(out[2].age, abs=1e-4)
    assert out[0].age == pytest.approx(attrs[MAN_40].age, abs=1e-3)  # batching does not change results
    assert all(a.face_found for name, a in attrs.items() if name != "blank")
    assert attrs["astronaut"].landmarks.shape == (68, 2)
    # landmarks come back in the input's pixels: the astronaut's face is in the upper middle of 512 px
    assert 150 < attrs["astronaut"].landmarks[:, 0].mean() < 300


def test_age_orders_young_and_old(attrs):
    assert attrs[BABY_BOY].age < 5
    assert attrs[GIRL].age < 18
    assert 15 < attrs[MAN_23].age < 40
    assert attrs[WOMAN_82].age > 60 and attrs[MAN_70].age > 55
    assert attrs[BABY_BOY].age < attrs[GIRL].age < attrs[MAN_40].age < attrs[MAN_70].age


def test_gender_on_clear_faces(attrs):
    for name in (MAN_23, MAN_40, MAN_70):
        assert attrs[name].p_female < 0.2, name
    for name in (GIRL, WOMAN_32, WOMAN_82):
        assert attrs[name].p_female > 0.8, name
    assert attrs["astronaut"].p_female > 0.5


def test_emotions_are_probabilities_and_see_smiles(attrs):
    for a in attrs.values():
        assert set(a.emotions) == set(EMOTIONS)
        assert sum(a.emotions.values()) == pytest.approx(1.0, abs=1e-4)
    assert attrs[WOMAN_32].emotions["happy"] > 0.8
    assert attrs[MAN_40].emotions["happy"] < 0.2
    assert attrs[WOMAN_32].smile > attrs[MAN_40].smile  # landmark smile agrees


def test_emotion_port_matches_keras():
    ref = load_file(str(DATA / "attributes" / "emotion_keras_reference.safetensors"))
    with torch.inference_mode():
        probs = torch.softmax(A.emotion_net()(torch.from_numpy(ref["inputs"])), dim=1).numpy()
    np.testing.assert_allclose(probs, ref["probs"], atol=1e-5)


def test_small_generated_size_faces(attrs):
    man, woman = attrs["man 40 at 64 px"], attrs["woman 82 at 64 px"]
    assert man.face_found and woman.face_found
    assert abs(man.age - attrs[MAN_40].age) < 5 and abs(woman.age - attrs[WOMAN_82].age) < 5
    assert A.identity_distance(man, attrs[MAN_40]) < 0.4


def test_no_face_falls_back_to_fixed_geometry(attrs):
    blank = attrs["blank"]
    assert not blank.face_found
    assert np.isfinite(list(A.scores(blank).values())).all()
    assert blank.landmarks.shape == (68, 2)


def test_yaw_and_roll_flip_with_the_image(attrs):
    turned, flipped = attrs[WOMAN_27], attrs["woman 27 flipped"]
    assert turned.yaw > 15  # she faces the image's right
    assert flipped.yaw == pytest.approx(-turned.yaw, abs=4)
    assert flipped.pitch == pytest.approx(turned.pitch, abs=4)
    assert attrs["astronaut flipped"].roll == pytest.approx(-attrs["astronaut"].roll, abs=2)


def test_identity_distance(attrs):
    assert A.identity_distance(attrs["astronaut jpeg"], attrs["astronaut"]) < 0.2
    assert A.identity_distance(attrs["astronaut flipped"], attrs["astronaut"]) < 0.4
    assert A.identity_distance(attrs[MAN_40], attrs[MAN_23]) > 0.6
    assert A.identity_distance(attrs[WOMAN_32], attrs["astronaut"]) > 0.6
    assert attrs[MAN_40].identity.shape == (128,)


def test_scores_are_named_like_the_directions(attrs):
    s = A.scores(attrs["astronaut"])
    assert list(s) == [*A.SCORE_NAMES, "skin", "facial_hair"] == list(A.MEASURED_NAMES)
    assert 60 < s["skin"] < 250  # cheek luminance of a light-skinned face, lit from the front
    assert s["gender"] == attrs["astronaut"].p_female and s["happy"] == attrs["astronaut"].emotions["happy"]


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError):
        A.analyze([np.zeros((64, 64, 3), np.float32)])
    with pytest.raises(UserError):
        A.analyze(np.zeros((64, 64, 3), np.uint8))  # one image, not a batch


def test_attributes_command_prints_scores(capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    attributes_command.register(sub, {"bench": sub.add_parser("bench").add_subparsers()})
    args = parser.parse_args(["attributes", str(DATA / "faces" / "astronaut.png"), "--json"])
    assert args.func(args) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["face_found"] and row["p_female"] > 0.5 and row["happy"] > 0.5
    assert set(A.SCORE_NAMES) - {"gender"} <= set(row)


# -- geometry, no models ------------------------------------------------------------------


def test_head_pose_recovers_a_rotated_model():
    model = fg.face_model_3d()
    for yaw, pitch, roll in [(0, 0, 0), (30, 0, 0), (0, -20, 0), (0, 0, 12), (-25, 15, -8)]:
        points = (model @ fg.angles_to_rotation(yaw, pitch, roll).T)[:, :2] * 40 + 100  # scaled orthographic
        np.testing.assert_allclose(fg.head_pose(points), (yaw, pitch, roll), atol=1e-6)


def test_head_pose_signs_follow_the_image():
    model = fg.face_model_3d()
    frontal = model[:, :2] * 40 + 100
    nose_right = frontal.copy()
    nose_right[:, 0] += -model[:, 2] * 10  # points nearer the viewer (the nose) move right: turned right
    assert fg.head_pose(nose_right)[0] > 5
    nose_up = frontal.copy()
    nose_up[:, 1] -= -model[:, 2] * 10  # the nose moves up: looking up
    assert fg.head_pose(nose_up)[1] > 5
    theta = np.radians(10)  # rotate the drawing clockwise on screen (y points down)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    assert fg.head_pose((frontal - 100) @ rot.T + 100)[2] == pytest.approx(10, abs=1e-6)
    yaw, pitch, roll = fg.head_pose(fg.mirror_landmarks(nose_right, 200))
    assert yaw < -5 and abs(pitch) < 1e-6 and abs(roll) < 1e-6


def test_expression_measures():
    model = fg.face_model_3d()
    face = model[:, :2].copy()
    assert 0.6 < fg.smile(face) < 1.0
    assert fg.mouth_open(face) < 0.1
    assert 0.2 < fg.eye_aspect_ratio(face) < 0.45
    wide = face.copy()
    wide[48, 0] -= 0.1
    wide[54, 0] += 0.1
    assert fg.smile(wide) > fg.smile(face)
    opened = face.copy()
    opened[65:68, 1] += 0.2  # lower inner lip drops
    assert fg.mouth_open(opened) > fg.mouth_open(face) + 0.2
    closed = face.copy()
    closed[[37, 38, 43, 44], 1] = closed[[41, 40, 47, 46], 1]  # upper lids onto the lower ones
    assert fg.eye_aspect_ratio(closed) < 0.05
    assert sorted(fg.MIRROR_68) == list(range(68)) and (fg.MIRROR_68[fg.MIRROR_68] == np.arange(68)).all()


@pytest.mark.parametrize("size", [60, 15, 8, 7])
def test_max_pool_same_matches_tensorflow_rule(size):
    x = torch.randn(1, 2, size, size)
    y = max_pool_same(x)
    assert y.shape[-1] == -(-size // 2)  # ceil(n / 2)
    pad = max((y.shape[-1] - 1) * 2 + 3 - size, 0)
    before = pad // 2  # TensorFlow puts the odd pixel of padding at the end
    i = 1  # output (1, 1) covers input rows/cols 2 - before .. 4 - before
    lo = 2 * i - before
    assert y[0, 0, i, i] == x[0, 0, lo : lo + 3, lo : lo + 3].max()


def test_facial_hair_reads_a_painted_moustache_and_leaves_skin_tone(faces, attrs):
    woman = attrs[WOMAN_32]
    lm = woman.landmarks.astype(np.float64)
    painted = faces[WOMAN_32].copy()
    # A dark moustache: the band between the nose and the upper lip.
    top, bottom = lm[31:36], lm[49:54]
    x0, x1 = int(top[:, 0].min()) - 2, int(top[:, 0].max()) + 3
    y0, y1 = int(top[:, 1].mean()) + 1, int(bottom[:, 1].mean())
    painted[y0:y1, x0:x1] = (painted[y0:y1, x0:x1] * 0.35).astype(np.uint8)
    after = A.analyze([painted], identity=False)[0]
    assert after.facial_hair - woman.facial_hair > 20
    assert abs(after.skin - woman.skin) < 3
    # Measured on the landmarks given, for any crop: the same photo mirrored reads the same.
    assert fg.facial_hair(faces[WOMAN_32][:, ::-1], fg.mirror_landmarks(lm, faces[WOMAN_32].shape[1])) == pytest.approx(
        woman.facial_hair, abs=3
    )


def test_a_face_and_its_mirror_image_read_the_same_age_and_gender(faces, attrs):
    # Each chip is read with its mirror image: on one chip the two readings are the same; on a
    # mirrored photo only the landmarks' jitter is left (the astronaut: 4.7 years apart without).
    for name, original in (("astronaut", attrs["astronaut"]), ("woman 27", attrs[WOMAN_27])):
        mirrored = attrs[f"{name} flipped"]
        assert abs(original.age - mirrored.age) < 4.0, name
        assert abs(original.p_female - mirrored.p_female) < 0.1, name
    chip = A.face_chip(A.locate(faces[MAN_40]), A.AGE_CHIP, A.CHIP_PADDING)
    a, b = A.predict_age([chip, np.ascontiguousarray(chip[:, ::-1])])
    assert a == pytest.approx(b, abs=1e-3)
