"""Edits rendered at the photo's resolution keep the photo's own pixels and detail."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.bench.photo import png_bytes as _png
from pipeline.bench.photo import psnr_db, seam_levels, sharpness
from pipeline.errors import UserError
from pipeline.faces.paste import paste_back, paste_mask
from pipeline.faces.photo_render import face_size_in_photo, face_view, render_on_photo
from pipeline.studio import Studio

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def studio(one_thread):
    # The 64-px model: the astronaut's face (about 110 px in her 512-px photo) is then larger
    # than the model's, as most photos' faces are.
    return Studio("utkface-64")


def test_a_zero_edit_gives_the_photo_back(astronaut):
    s = astronaut
    result = render_on_photo(s.photo, s.aligned, s.reconstruction, s.reconstruction)
    assert np.array_equal(result.photo, s.photo)
    assert result.face.shape[0] == face_size_in_photo(s.aligned) > s.reconstruction.shape[0]


def test_an_edit_keeps_the_photo_sharp_and_changes_only_the_face(studio, astronaut):
    s = astronaut
    edited = studio.edit(s, {"smile": 2.0}).image
    result = render_on_photo(s.photo, s.aligned, s.reconstruction, edited)
    mask = paste_mask(s.photo.shape[:2], s.aligned) > 0.5
    plain = paste_back(s.photo, s.aligned, edited)
    ratio = sharpness(result.photo, mask) / sharpness(s.photo, mask)
    assert ratio > 0.8  # the plain paste-back of the 64-px face keeps far less
    assert ratio > 2 * sharpness(plain, mask) / sharpness(s.photo, mask)
    assert psnr_db(result.photo, s.photo) < 60  # something did change ...
    changed = np.any(result.photo != s.photo, axis=2)
    ys, xs = np.nonzero(changed)
    face = s.aligned.face.box  # ... and only around the face
    width = face[2] - face[0]
    assert xs.min() > face[0] - width and xs.max() < face[2] + width
    assert ys.max() < s.photo.shape[0]
    # The smile is there at the photo's resolution: the mouth region differs most.
    diff = np.abs(result.face.astype(int) - face_view(s.photo, s.aligned).astype(int)).sum(2)
    side = diff.shape[0]
    lower, upper = diff[side // 2 :].mean(), diff[: side // 3].mean()
    assert lower > upper


def test_a_live_edit_shows_the_face_first_and_its_scores_after(studio, astronaut):
    full = studio.edit(astronaut, {"smile": 2.0})
    live = studio.edit(astronaut, {"smile": 2.0}, scores=False)
    assert live.scores == {} and np.array_equal(live.face, full.face)
    assert studio.edit_scores(astronaut) == full.scores  # the same scores, read when asked
    assert full.scores["lpips"] == studio.edit(astronaut, {"smile": 2.0}).scores["lpips"]  # the cached target agrees
    with pytest.raises(UserError, match="edit the face first"):
        studio.edit_scores(studio.new_session())


def test_the_scores_are_read_on_the_face_the_user_sees(studio, astronaut):
    from pipeline.studio.scores import analyze_faces

    zero = studio.edit(astronaut, {})
    # The zero edit is the photo itself: it reads as the photo, not as the model's reconstruction.
    assert zero.scores["identity_distance"] == 0 and zero.scores["psnr_db"] == 100
    assert {k: zero.scores[k] for k in ("age", "gender", "emotion")} == {k: zero.scores["input"][k] for k in ("age", "gender", "emotion")}
    older = studio.edit(astronaut, {"age": 2.0})
    shown = analyze_faces([older.face])[0]  # the face at the photo's resolution
    assert older.scores["age"] == round(shown.age, 1) > zero.scores["age"]


def test_a_face_smaller_than_the_model_still_renders(studio):
    photo = np.asarray(Image.open(DATA / "faces" / "astronaut.png").convert("RGB").resize((128, 128)))
    session = studio.new_session()
    studio.open_photo(session, _png(photo))
    studio.align(session, 0)
    studio.encode(session)
    edited = studio.edit(session, {"age": 2.0}).image
    result = render_on_photo(session.photo, session.aligned, session.reconstruction, edited)
    assert result.photo.shape == photo.shape
    assert result.face.shape[0] == session.reconstruction.shape[0]  # the model's resolution, not less


def test_a_face_at_the_border_pastes_back_without_artefacts(studio, astronaut):
    # Cut the photo so the face touches its left edge.
    s = astronaut
    x0 = int(s.aligned.face.box[0] + 0.3 * (s.aligned.face.box[2] - s.aligned.face.box[0]))
    photo = np.ascontiguousarray(s.photo[:, x0:])
    session = studio.new_session()
    studio.open_photo(session, _png(photo))
    studio.align(session, 0)
    studio.encode(session)
    zero = render_on_photo(session.photo, session.aligned, session.reconstruction, session.reconstruction)
    assert np.array_equal(zero.photo, photo)
    edited = studio.edit(session, {"smile": 1.5}).image
    result = render_on_photo(session.photo, session.aligned, session.reconstruction, edited)
    assert result.photo.shape == photo.shape
    # No seam on the border column: it changes no more than the column next to it.
    edge = np.abs(result.photo[:, 0].astype(int) - photo[:, 0]).mean()
    inner = np.abs(result.photo[:, 3].astype(int) - photo[:, 3]).mean()
    assert edge <= inner + 2




def test_a_large_edit_fades_out_before_the_edge_of_the_generators_square(studio, astronaut):
    # Age +3 sd recolours the face, hair and neck; at the edge of the square the generator covers
    # the change must be gone (else a straight seam crosses the hair), and the face still changed.
    s = astronaut
    edited = studio.edit(s, {"age": 3.0}).image
    result = render_on_photo(s.photo, s.aligned, s.reconstruction, edited)
    plain = paste_back(s.photo, s.aligned, edited)
    assert seam_levels(s.photo, result.photo, s.aligned) <= 4
    assert seam_levels(s.photo, plain, s.aligned) > 20  # the plain paste-back is cut there
    diff = np.abs(result.face.astype(int) - face_view(s.photo, s.aligned).astype(int)).max(2)
    side = diff.shape[0]
    assert np.median(diff[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4]) > 8


def test_bench_photo_command(tmp_path, capsys, one_thread):
    from pipeline import cli

    photo = DATA / "utkface_mini" / "25_0_3_20170107213404617.jpg.chip.jpg"
    out = tmp_path / "photo.json"
    assert cli.main(["bench", "photo", str(photo), "--steps", "0", "--n-young", "0", "--out", str(out)]) == 0
    shown = json.loads(capsys.readouterr().out)
    result = json.loads(out.read_text())
    assert shown["summary"] == result["summary"] and result["photos"] == 1
    assert result["summary"]["zero"]["psnr_db"] == 100  # the zero edit gives the photo back
    assert result["summary"]["smile+2"]["sharpness"] > result["summary"]["smile+2"]["sharpness_plain_paste"]
    assert {"zero_psnr_db", "sharpness", "kept_share", "lpips_to_generator", "edit_s_at_256"} <= set(result["goals"])
    assert result["speed"]["face_px"] >= 256 and result["speed"]["scores_s"] > 0
    age = result["summary"]["age+3"]  # what the age edit must leave alone, read on the result
    assert {"skin_change", "facial_hair_change", "gender_flipped", "gender_flipped_generator", "moustache_on_women"} <= set(age)


def test_bench_photo_says_what_is_missing(tmp_path, capsys):
    from pipeline import cli

    assert cli.main(["bench", "photo", str(tmp_path / "nowhere.jpg"), "--out", str(tmp_path / "p.json")]) == 2
    assert "photo not found" in capsys.readouterr().err


def test_new_content_keeps_skin_texture_but_not_strong_edges():
    from pipeline.faces.photo_render import DETAIL_CLIP, fine_detail

    rng = np.random.default_rng(0)
    pores = rng.normal(0, 0.01, (64, 64, 3)).astype(np.float32)
    image = 0.5 + pores
    image[:, 40:] += 0.4  # a hair line: content that may have moved away
    detail = fine_detail(image, 2.0)
    skin = (slice(None), slice(4, 30))
    # Pores pass (the generator's new skin gets the photo's texture) ...
    assert np.corrcoef(detail[skin].ravel(), pores[skin].ravel())[0, 1] > 0.8
    # ... the edge does not ghost: clipped to a few times the texture's own amplitude.
    assert np.abs(detail).max() <= DETAIL_CLIP * np.median(np.abs(detail)) * 1.5
    assert np.abs(detail[:, 38:42]).max() < 0.1


def test_a_recoloured_face_is_not_warped(astronaut):
    """An edit that changes brightness and colour unevenly but moves nothing (as age does: paler
    skin, whiter hair) leaves the photo's features where they are, sharp, and carries the colour."""
    s = astronaut
    rec = s.reconstruction.astype(np.float32)
    side = rec.shape[0]
    ramp = np.linspace(0.0, 1.0, side, dtype=np.float32)
    light = 1.0 + 0.35 * ramp[None, :, None] * ramp[:, None, None]  # lighter towards one corner
    edited = np.clip(rec * light + 20, 0, 255).astype(np.uint8)
    result = render_on_photo(s.photo, s.aligned, s.reconstruction, edited)
    assert np.percentile(np.linalg.norm(result.flow, axis=2), 90) < 0.5 * result.flow.shape[0] / side
    mask = paste_mask(s.photo.shape[:2], s.aligned) > 0.5
    assert sharpness(result.photo, mask) / sharpness(s.photo, mask) > 0.85
    before, after = face_view(s.photo, s.aligned).astype(float), result.face.astype(float)
    n = after.shape[0]
    lit = (slice(int(0.6 * n), int(0.75 * n)),) * 2  # towards the corner the ramp lightens most
    dark = (slice(int(0.25 * n), int(0.4 * n)),) * 2
    rise = lambda region: after[region].mean() - before[region].mean()  # noqa: E731
    assert rise(lit) > rise(dark) + 8  # the uneven lightening is there


def test_an_edit_keeps_the_skin_tone_and_carries_what_changes_locally(astronaut):
    """The generator's edits move skin tone with their attribute (age +3σ paled dark skin); the
    photo keeps its own, while a local change (a darker chin, as a beard's shadow) still shows."""
    from pipeline.faces.face_geometry import skin_luminance

    s = astronaut
    rec = s.reconstruction.astype(np.float32)
    side = rec.shape[0]
    edited = rec - 35  # the whole face darker ...
    edited[int(0.78 * side) : int(0.9 * side), int(0.4 * side) : int(0.6 * side)] -= 45  # ... the chin more
    result = render_on_photo(s.photo, s.aligned, s.reconstruction, np.clip(edited, 0, 255).astype(np.uint8))
    before, after = face_view(s.photo, s.aligned), result.face
    landmarks = s.aligned.landmarks() * (before.shape[0] / s.aligned.size)
    assert abs(skin_luminance(after, landmarks) - skin_luminance(before, landmarks)) < 4
    n = before.shape[0]
    chin = (slice(int(0.8 * n), int(0.88 * n)), slice(int(0.43 * n), int(0.57 * n)))
    assert before[chin].astype(float).mean() - after[chin].astype(float).mean() > 20


def test_the_photo_moves_only_where_motion_explains_the_change(astronaut):
    """New texture (creases, as an age edit draws) is carried as appearance, not as motion that
    bends the photo's features; a part the edit really moves (a shifted mouth) is still moved."""
    s = astronaut
    rec = s.reconstruction.astype(np.float32)
    side = rec.shape[0]
    edited = rec.copy()
    for row in (0.22, 0.27, 0.32):  # creases across the forehead
        y = int(row * side)
        edited[y, int(0.3 * side) : int(0.7 * side)] -= 60
    mouth = (slice(int(0.72 * side), int(0.86 * side)), slice(int(0.3 * side), int(0.7 * side)))
    edited[mouth] = np.roll(rec, 2, axis=0)[mouth]  # the mouth two generator pixels lower
    result = render_on_photo(s.photo, s.aligned, s.reconstruction, np.clip(edited, 0, 255).astype(np.uint8))
    scale = result.flow.shape[0] / side
    motion = np.linalg.norm(result.flow, axis=2) / scale  # in generator pixels
    n = motion.shape[0]
    forehead = motion[int(0.18 * n) : int(0.36 * n), int(0.3 * n) : int(0.7 * n)]
    assert np.percentile(forehead, 90) < 0.1
    lips = motion[int(0.76 * n) : int(0.82 * n), int(0.4 * n) : int(0.6 * n)]
    assert np.median(lips) > 0.7
    # The creases show on the photo-resolution face.
    before, after = face_view(s.photo, s.aligned).astype(float), result.face.astype(float)
    m = after.shape[0]
    crease = (slice(int(0.21 * m), int(0.23 * m)), slice(int(0.35 * m), int(0.65 * m)))
    assert before[crease].mean() - after[crease].mean() > 15
