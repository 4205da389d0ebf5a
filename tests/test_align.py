"""Detection, template alignment and paste-back on a photo and a painting."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.bench.align import psnr
from pipeline.errors import UserError
from pipeline.faces.align import (
    AlignedFace,
    align_face,
    alignment_matrix,
    apply,
    available_templates,
    load_template,
    template_points,
    umeyama,
    warp_affine,
)
from pipeline.faces.detection import detect_faces, find_faces, select_face
from pipeline.faces.images import load_image
from pipeline.faces.paste import paste_back, paste_mask

FACES = Path(__file__).parent / "data" / "faces"


@pytest.fixture(scope="module")
def photos():
    """name -> (image, largest face); detection once per module keeps the tests fast."""
    out = {}
    for name in ("astronaut.png", "mona_lisa.jpg"):
        image = load_image(FACES / name)
        out[name] = (image, find_faces(image)[0])
    return out


@pytest.fixture(scope="module")
def group():
    """The two-face composite and its faces."""
    image = two_faces()
    return image, detect_faces(image)


def two_faces() -> np.ndarray:
    """The astronaut (face ~87 px) beside the Mona Lisa scaled up (face ~200 px)."""
    astronaut = load_image(FACES / "astronaut.png")
    mona = np.asarray(Image.fromarray(load_image(FACES / "mona_lisa.jpg")).resize((394, 394), Image.LANCZOS))
    canvas = np.full((512, 512 + 394, 3), 128, np.uint8)
    canvas[:, :512] = astronaut
    canvas[59:453, 512:] = mona
    return canvas


def ffhq_quad(lm: np.ndarray) -> np.ndarray:
    """The FFHQ recipe's quad, written out as in the dataset script, to check the matrix against."""
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg, eye_to_eye = (eye_left + eye_right) * 0.5, eye_right - eye_left
    eye_to_mouth = (lm[48] + lm[54]) * 0.5 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def test_faces_have_landmarks_inside_their_box(photos):
    for _, face in photos.values():
        left, top, right, bottom = face.box
        assert face.landmarks.shape == (68, 2) and face.score > 0 and face.size > 60
        centre = face.landmarks.mean(0)
        assert left < centre[0] < right and top < centre[1] < bottom


def test_two_faces_largest_first(group):
    _, faces = group
    assert len(faces) == 2
    assert faces[0].size > faces[1].size
    assert faces[0].box[0] >= 512 and faces[1].box[2] <= 512  # Mona Lisa (right) is the larger
    assert select_face(faces, 1) is faces[1]
    with pytest.raises(UserError, match="only 2 faces"):
        select_face(faces, 2)


@pytest.mark.parametrize("kind", ["noise", "gradient"])
def test_no_face_is_a_user_error(kind):
    rng = np.random.default_rng(0)
    if kind == "noise":
        image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    else:
        image = np.linspace(0, 255, 96 * 128 * 3).reshape(96, 128, 3).astype(np.uint8)
    assert detect_faces(image) == []
    with pytest.raises(UserError, match="no face found"):
        find_faces(image)


def test_ffhq_matrix_reproduces_the_dataset_quad(photos):
    _, face = photos["astronaut.png"]
    size = 1024
    matrix = alignment_matrix(face.landmarks, "ffhq", size)
    # Output corners (pixel edges at -0.5 and size - 0.5) land on the quad's corners.
    edges = np.array([[-0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5], [size - 0.5, -0.5]])
    np.testing.assert_allclose(apply(matrix, edges), ffhq_quad(face.landmarks.astype(np.float64)), atol=1e-6)


@pytest.mark.parametrize("name", ["astronaut.png", "mona_lisa.jpg"])
def test_ffhq_alignment_places_eyes_and_mouth(photos, name):
    image, face = photos[name]
    size = 256
    aligned = align_face(image, face, "ffhq", size)
    assert aligned.image.shape == (size, size, 3)
    # Landmarks found again on the aligned image (checks the rendering, not just the matrix).
    lm = detect_faces(aligned.image)[0].landmarks.astype(np.float64)
    assert np.abs(lm - aligned.landmarks()).mean() < 0.02 * size
    eye_avg = (lm[36:42].mean(0) + lm[42:48].mean(0)) / 2
    eye_to_eye = lm[42:48].mean(0) - lm[36:42].mean(0)
    eye_to_mouth = (lm[48] + lm[54]) / 2 - eye_avg
    # The recipe puts eye_avg + 0.1 eye_to_mouth at the centre and makes the crop twice the larger of
    # 2 |eye_to_eye| and 1.8 |eye_to_mouth|.
    np.testing.assert_allclose(eye_avg + 0.1 * eye_to_mouth, [size / 2 - 0.5] * 2, atol=0.02 * size)
    assert max(2 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth)) == pytest.approx(size / 2, rel=0.04)


@pytest.mark.parametrize("name", ["astronaut.png", "mona_lisa.jpg"])
def test_utkface_alignment_matches_template(photos, name):
    image, face = photos[name]
    size = 128
    aligned = align_face(image, face, "utkface", size)
    target = template_points("utkface", size)
    fit = load_template("utkface")["fit_indices"]
    mapped = aligned.landmarks()
    # Held-out UTKFace faces: 2.2% of the side on average, 3.2% at the 90th percentile.
    assert np.linalg.norm(mapped - target, axis=1)[fit].mean() < 0.04 * size
    again = detect_faces(aligned.image)[0].landmarks
    assert np.linalg.norm(again - target, axis=1)[fit].mean() < 0.05 * size


def test_templates_are_data():
    assert {"ffhq", "utkface"} <= set(available_templates())
    points = load_template("utkface")["points"]
    assert len(points) == 68 and all(0 < v < 1.05 for p in points for v in p)
    with pytest.raises(UserError, match="unknown alignment template 'nope'"):
        load_template("nope")


def test_warp_identity_and_shift_are_exact(photos):
    image, _ = photos["astronaut.png"]
    assert np.array_equal(warp_affine(image, np.eye(3), (512, 512)), image)
    shift = np.array([[1.0, 0, 7], [0, 1.0, 3], [0, 0, 1]])
    assert np.array_equal(warp_affine(image, shift, (400, 300)), image[3:303, 7:407])
    # Outside the photo, reflect padding mirrors it.
    padded = warp_affine(image, np.array([[1.0, 0, -4], [0, 1.0, 0], [0, 0, 1]]), (64, 64))
    assert np.array_equal(padded[:, :4], image[:64, 4:0:-1])


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(30, 2)) * 50
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rot).T + shift
    np.testing.assert_allclose(apply(umeyama(src, dst, rng.uniform(0.5, 2, 30)), src), dst, atol=1e-8)


@pytest.mark.parametrize(("template", "size", "edited_size"), [("ffhq", 256, 256), ("utkface", 128, 256)])
def test_paste_back_round_trip(photos, template, size, edited_size):
    image, face = photos["astronaut.png"]
    aligned = align_face(image, face, template, size)
    edited = np.asarray(Image.fromarray(aligned.image).resize((edited_size, edited_size), Image.LANCZOS))
    composite = paste_back(image, aligned, edited)
    mask = paste_mask(image.shape[:2], aligned, (edited_size, edited_size))
    assert (mask > 0.5).sum() > 3000
    assert psnr(composite[mask > 0.5], image[mask > 0.5]) > 30
    assert np.array_equal(composite[mask == 0], image[mask == 0])


def test_paste_back_carries_an_edit_and_nothing_else(photos):
    image, face = photos["mona_lisa.jpg"]
    aligned = align_face(image, face, "ffhq", 256)
    edited = aligned.image.copy()
    mouth = aligned.landmarks()[48:68].mean(0).round().astype(int)
    edited[mouth[1] - 6 : mouth[1] + 6, mouth[0] - 20 : mouth[0] + 20] = (40, 200, 40)
    composite = paste_back(image, aligned, edited)
    src_mouth = face.landmarks[48:68].mean(0).round().astype(int)
    patch = composite[src_mouth[1] - 2 : src_mouth[1] + 3, src_mouth[0] - 5 : src_mouth[0] + 5].astype(int)
    assert (patch[..., 1] - patch[..., 0]).mean() > 80  # the green bar is there
    mask = paste_mask(image.shape[:2], aligned)
    assert np.array_equal(composite[mask == 0], image[mask == 0])


def test_paste_back_each_face_of_a_group(group):
    image, faces = group
    composite = image
    for i, face in enumerate(faces):
        aligned = align_face(image, face, "ffhq", 128, face_index=i)
        composite = paste_back(composite, aligned, np.full_like(aligned.image, 255), colour="none")
    for face in faces:
        x, y = face.landmarks[30].round().astype(int)  # nose tip: well inside the mask
        assert (composite[y, x] == 255).all()


def test_transform_round_trips_through_json(photos):
    image, face = photos["mona_lisa.jpg"]
    aligned = align_face(image, face, "utkface", 64, face_index=0)
    back = AlignedFace.from_dict(json.loads(json.dumps(aligned.to_dict())))
    np.testing.assert_allclose(back.matrix, aligned.matrix, atol=1e-7)
    assert (back.template, back.size, back.source_size) == ("utkface", 64, (197, 197))
    np.testing.assert_allclose(back.face.landmarks, face.landmarks, atol=1e-3)
    with pytest.raises(UserError, match="not an alignment transform"):
        AlignedFace.from_dict({"matrix": [[1, 0, 0]]})
    with pytest.raises(UserError, match="aligned on a 197x197"):
        paste_back(np.zeros((50, 60, 3), np.uint8), back, aligned.image)


def test_ffhq_padding_blurs_only_outside_the_photo(photos):
    image, face = photos["astronaut.png"]
    crop = image[60:400, 150:480]  # the face now sits near the top-left edge
    moved = replace(face, landmarks=face.landmarks - [150, 60])
    aligned = align_face(crop, moved, "ffhq", 256)
    plain = warp_affine(crop, aligned.matrix, (256, 256), padding="reflect")
    assert np.array_equal(aligned.image[100:200, 100:200], plain[100:200, 100:200])
    corner, plain_corner = aligned.image[:40, :40].astype(float), plain[:40, :40].astype(float)
    assert np.abs(np.diff(corner, axis=1)).mean() < 0.5 * np.abs(np.diff(plain_corner, axis=1)).mean()
