"""Talking heads: frames from the generator driven by a mouth track, and the ``talk`` command.

Runs on the test model of the app tests (the embedded model's weights, the golden StyleGAN2
where they are absent). Most tests use a talk map built from the model's own principal
directions so they stay fast; fitting a real one is the slow test at the end.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_app_api import small_model

from pipeline import studio as studio_module
from pipeline.cli import main
from pipeline.latent.files import Latent, save_latent
from pipeline.models import registry
from pipeline.models.checkpoints import load_native
from pipeline.talk.atnet import load_talk_model
from pipeline.talk.audio import FPS
from pipeline.talk.frames import VIDEO_SIDE
from pipeline.talk.mouth import PARAMS, articulate, closed
from pipeline.talk.talking_head import (
    MEASURES,
    TalkMap,
    animate,
    blink_track,
    generator_digest,
    load_talk_map,
    measures,
    prepare,
    talk_video,
)
from pipeline.talk.video import probe
from pipeline.training.talk_map import fit_talk_map

MODEL = registry.default_model().name  # the name the test model folder stands in for
NOISE_CLIP = "tests/data/audio/noise_doing_the_dishes_50s-53s.wav"


def principal_talk_map(G) -> TalkMap:
    """A talk map whose directions are the model's top principal axes of W: it moves the face
    visibly, which is all the rendering and video tests need."""
    with torch.no_grad():
        w = G.mapping(torch.randn(2000, G.style_dim, generator=torch.Generator().manual_seed(0)))
    _, s, v = torch.pca_lowrank(w - w.mean(0), q=3, center=False)
    basis = (v.T * (s / np.sqrt(len(w)))[:, None]).double().numpy() * np.array([[40.0], [20.0], [60.0]])
    limits = np.array([[-0.05, 0.05], [-0.1, 0.1], [-0.05, 0.0]])
    layers = {"mouth": (0, G.n_latent), "eyes": (0, G.n_latent)}
    return TalkMap(basis=basis, layers=layers, limits=limits, info={"generator": generator_digest(G)})


pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = small_model(tmp_path_factory.mktemp("model"), directions=False)
    G = load_native(folder / "generator.safetensors").eval().requires_grad_(False)
    (folder / "talk_map.safetensors").unlink(missing_ok=True)  # a link to the shipped map: never write through it
    principal_talk_map(G).save(folder / "talk_map.safetensors")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(studio_module.OVERRIDE_ENV, str(folder))
        studio_module.load_model.cache_clear()
        yield folder, G
        studio_module.load_model.cache_clear()


@pytest.fixture(scope="module")
def latent_file(model, tmp_path_factory):
    folder, G = model
    with torch.no_grad():
        w = G.mean_w()
    return save_latent(tmp_path_factory.mktemp("latent") / "face.safetensors", Latent(w, MODEL, "w", "utkface"))


def opening_track(head, frames: int = 20) -> np.ndarray:
    """The still's mouth opening and closing once, like a syllable."""
    params = np.zeros((frames, len(PARAMS)))
    params[:, PARAMS.index("open")] = 0.25 * np.sin(np.linspace(0, np.pi, frames))
    return articulate(closed(head.shape), params)


def test_blinks_come_at_human_intervals_and_are_short():
    track = blink_track(60 * FPS, seed=3)
    starts = np.flatnonzero((track[1:] > 0) & (track[:-1] == 0)) + 1
    gaps = np.diff(starts) / FPS
    assert 10 <= len(starts) <= 40  # 10-40 blinks a minute
    assert gaps.min() >= 2.0 and gaps.max() <= 6.0  # every 2-6 s
    assert track.max() == 1.0 and (track > 0).sum() / len(starts) <= 8  # about a quarter of a second each
    assert np.array_equal(track, blink_track(60 * FPS, seed=3))


def test_measures_follow_the_articulated_mouth():
    rest = closed(load_talk_model().mean_face)
    params = np.zeros((3, len(PARAMS)))
    params[1, PARAMS.index("open")] = 0.2
    params[2, PARAMS.index("spread")] = 0.2
    m = measures(articulate(rest, params))
    opening, width = m[:, MEASURES.index("open")], m[:, MEASURES.index("width")]
    assert opening[1] - opening[0] == pytest.approx(0.2, abs=0.02)
    assert width[2] / width[0] == pytest.approx(1.2, abs=0.02) and opening[2] == pytest.approx(opening[0], abs=1e-6)


def test_frames_move_the_mouth_and_nothing_far_from_the_face(model):
    _, G = model
    head = prepare(G, G.mean_w()[:, None].repeat(1, G.n_latent, 1), principal_talk_map(G))
    clip = animate(head, opening_track(head), keep_expression=True)
    assert clip.frames.shape[1:] == head.canvas.image.shape and head.canvas.image.shape[0] == VIDEO_SIDE
    changed = (clip.frames != head.canvas.image[None]).any(axis=-1)  # (T, H, W)
    assert changed.any(), "the mouth never moved"
    x0, y0, x1, y1 = head.warper.box
    outside = np.ones(changed.shape[1:], bool)
    outside[y0:y1, x0:x1] = False
    assert not changed[:, outside].any(), "pixels outside the work box changed"
    # Most of the change is below the eyes (lips and jaw), and the mouth ends where it began.
    rows = np.flatnonzero(changed.any(axis=(0, 2)))
    eye_line = head.landmarks[36:48, 1].mean()
    assert changed[:, int(eye_line) + 5 :].sum() > 0.9 * changed.sum() and rows.max() > eye_line
    # The first and last frames are the same mouth at rest.
    assert np.abs(clip.frames[0].astype(int) - clip.frames[-1]).max() <= 1
    # The opening is filled with a dark mouth interior at the widest frame.
    widest = clip.targets[len(clip.targets) // 2]
    gap = widest[[65, 66, 67]].mean(axis=0) / 2 + widest[[61, 62, 63]].mean(axis=0) / 2
    x, y = np.round(gap).astype(int)
    assert clip.frames[len(clip.targets) // 2][y, x].mean() < head.canvas.image[y, x].mean() - 20


def test_an_open_mouth_shows_teeth_over_a_warm_dark_cavity(model):
    _, G = model
    head = prepare(G, G.mean_w()[:, None].repeat(1, G.n_latent, 1), principal_talk_map(G))
    clip = animate(head, opening_track(head), keep_expression=True)
    t = len(clip.targets) // 2
    target, frame = clip.targets[t], clip.frames[t].astype(float)
    upper, lower = target[[61, 62, 63]].mean(axis=0), target[[65, 66, 67]].mean(axis=0)
    assert lower[1] - upper[1] > 8, "the widest frame should be well open"
    teeth = frame[int(round(upper[1] + 2)), int(round(upper[0]))]
    cavity = frame[int(round((upper[1] + lower[1]) / 2)), int(round((upper[0] + lower[0]) / 2))]
    assert teeth.mean() > cavity.mean() + 60, "upper teeth should show under the upper lip"
    tongue = frame[int(round(lower[1] - 2)), int(round(lower[0]))]
    # The cavity and the tongue rising from its floor are the mouth's own dark red, not grey.
    assert cavity[0] > 1.8 * cavity[2] and tongue[0] > 1.8 * tongue[2]
    assert tongue.mean() > cavity.mean() + 20, "the tongue is lit at the front"


def test_blinks_close_the_lids_only_while_blinking(model):
    _, G = model
    head = prepare(G, G.mean_w()[:, None].repeat(1, G.n_latent, 1), principal_talk_map(G))
    rest = np.repeat(head.shape[None], 12, axis=0)  # the still's own mouth: only the eyes move
    blinks = np.zeros(12)
    blinks[4:8] = 1.0
    clip = animate(head, rest, blinks, rest=rest[0], keep_expression=True)
    changed = (clip.frames != head.canvas.image[None]).any(axis=-1)
    assert not changed[:4].any() and not changed[8:].any()
    assert changed[4:8].any()
    # The upper lids came down onto the lower ones, and what changed is around the eyes.
    lids = clip.targets[5][[37, 38, 43, 44], 1] - head.landmarks[[37, 38, 43, 44], 1]
    assert (lids > 0).all()
    visible = np.abs(clip.frames[5].astype(int) - head.canvas.image).max(axis=-1) > 12
    rows = np.flatnonzero(visible.any(axis=1))
    eye_rows = rows[rows < head.landmarks[30, 1]]  # above the nose tip
    assert len(eye_rows) and eye_rows.min() > head.landmarks[17:27, 1].min() - 10  # nothing moves above the brows


def test_a_smiling_still_relaxes_unless_kept():
    from pipeline.talk.talking_head import RELAXED_WIDTH, relaxed

    rest = closed(load_talk_model().mean_face)
    smile = rest.copy()
    centre = smile[48:68, 0].mean()
    smile[48:68, 0] = centre + (smile[48:68, 0] - centre) * 1.2  # 20% wider
    smile[[48, 54], 1] -= 0.06  # corners up
    let_go = relaxed(smile)
    assert let_go[54, 0] - let_go[48, 0] == pytest.approx(RELAXED_WIDTH, abs=1e-6)
    assert (let_go[[48, 54], 1] > smile[[48, 54], 1]).all()
    assert np.allclose(relaxed(let_go), let_go)  # a neutral mouth is left as it is


def test_speech_tracks_open_to_real_speech_range():
    from pipeline.talk.atnet import SPEECH_OPEN_P90, calibrated
    from pipeline.talk.mouth import inner_gap

    rest = closed(load_talk_model().mean_face)
    params = np.zeros((50, len(PARAMS)))
    params[:, PARAMS.index("open")] = 0.03 + 0.15 * np.abs(np.sin(np.linspace(0, 6, 50)))  # timid, never closed
    track = articulate(rest, params)
    out = calibrated(track, rest, "atnet")
    gaps = inner_gap(out)
    assert np.percentile(gaps, 90) == pytest.approx(SPEECH_OPEN_P90, abs=0.02)
    assert np.percentile(gaps, 5) < 0.005, "the quietest frames should close the lips"
    assert np.allclose(out[:, 54, 0] - out[:, 48, 0], track[:, 54, 0] - track[:, 48, 0])  # width kept


def test_typed_speech_opens_as_wide_as_recorded_speech():
    from pipeline.talk.atnet import SPEECH_OPEN_P90, speech_track
    from pipeline.talk.mouth import inner_gap

    rest = closed(load_talk_model().mean_face)
    track = speech_track(text="Papa saw a large dark car.", face=rest, method="phonemes")
    gaps = inner_gap(track.landmarks)
    assert np.percentile(gaps, 90) == pytest.approx(SPEECH_OPEN_P90, abs=0.04)
    assert gaps.min() < 0.005, "m, b and p close the lips"


def test_talk_map_round_trip_and_refuses_other_weights(model, tmp_path):
    _, G = model
    talk_map = principal_talk_map(G)
    path = talk_map.save(tmp_path / "map.safetensors")
    loaded = load_talk_map(path, G)
    assert np.allclose(loaded.basis, talk_map.basis, atol=1e-6) and loaded.layers == talk_map.layers
    other = load_native(model[0] / "generator.safetensors")
    with torch.no_grad():
        other.input.input.add_(1.0)
    with pytest.raises(Exception, match="other generator weights"):
        load_talk_map(path, other, "python -m pipeline train talkmap")
    offsets = loaded.offsets(np.array([[1.0, 0.0, 0.0]]), G.n_latent)  # clipped to the reach
    assert torch.allclose(offsets[0, 0], torch.from_numpy(0.05 * talk_map.basis[0]).float(), atol=1e-5)


def test_talk_command_writes_h264_with_aac_as_long_as_the_speech(model, latent_file, tmp_path, capsys):
    out = tmp_path / "hello.mp4"
    assert main(["talk", str(latent_file), "--text", "Hello, nice to meet you.", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    info = probe(out)
    assert info["video"]["codec"] == "h264" and info["audio"]["codec"] == "aac"
    assert info["video"]["fps"] == 25
    assert abs(info["duration"] - report["seconds"]) <= 1 / FPS + 0.03
    assert report["frames"] == int(np.ceil(report["seconds"] * FPS - 1e-9))


def test_talk_from_audio_with_atnet(model, latent_file, tmp_path, capsys):
    out = tmp_path / "arctic.mp4"
    clip = "tests/data/audio/cmu_arctic_us_aew_a0001.wav"
    assert main(["talk", str(latent_file), "--audio", clip, "--out", str(out), "--no-blinks"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "atnet"
    import soundfile as sf

    assert abs(probe(out)["duration"] - sf.info(clip).duration) <= 1 / FPS + 0.03


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text", "   "], "prompt is empty"),
        (["--text", "a" * 301], "limit is 300"),
        (["--audio", NOISE_CLIP], "no speech"),
        (["--audio", "UNDECODABLE"], "cannot decode"),
        (["--audio", "SILENT"], "is silent"),
        (["--text", "hi", "--out", "video.avi"], "must be an .mp4"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(model, latent_file, tmp_path, capsys, extra, message):
    if "UNDECODABLE" in extra:
        bad = tmp_path / "speech.wav"
        bad.write_bytes(b"RIFF this is not audio at all" * 10)
        extra = [str(bad) if e == "UNDECODABLE" else e for e in extra]
    if "SILENT" in extra:
        import soundfile as sf

        sf.write(tmp_path / "quiet.wav", np.zeros(3 * 16000, np.float32), 16000)
        extra = [str(tmp_path / "quiet.wav") if e == "SILENT" else e for e in extra]
    out = [] if "--out" in extra else ["--out", str(tmp_path / "x.mp4")]
    assert main(["talk", str(latent_file), *extra, *out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and message in err
    assert not (tmp_path / "x.mp4").exists()


def test_studio_talk_makes_the_video(model, tmp_path):
    studio = studio_module.Studio()
    session = studio.new_session()
    try:
        studio.random_face(session, seed=1)
        path = studio.talk(session, "Good morning.", wpm=180)
        info = probe(path)
        assert info["audio"] is not None and info["video"]["codec"] == "h264"
    finally:
        session.close()


def test_talk_video_pastes_into_the_photo(model, tmp_path):
    from pipeline.faces.align import align_face
    from pipeline.faces.detection import find_faces
    from pipeline.faces.images import load_image

    _, G = model
    photo = load_image("tests/data/faces/astronaut.png")
    aligned = align_face(photo, find_faces(photo)[0], "utkface", 64)
    wplus = G.mean_w()[:, None].repeat(1, G.n_latent, 1)
    result = talk_video(G, wplus, principal_talk_map(G), tmp_path / "pasted.mp4", text="Hi there.",
                        photo=(photo, aligned), blinks=False)  # fmt: skip
    assert result.frames.shape[1:] == photo.shape
    # Far from the face the photo is untouched.
    assert np.array_equal(
        result.frames[:, :20, :20], np.broadcast_to(photo[:20, :20], result.frames[:, :20, :20].shape)
    )


@pytest.mark.slow
def test_fitted_talk_map_opens_the_mouth(model):
    _, G = model
    talk_map = fit_talk_map(G, faces=60, trial_faces=4, calibration_faces=24, log=lambda _: None)
    assert set(talk_map.layers) == {"mouth", "eyes"} and talk_map.limits[0, 1] > 0
    head = prepare(G, G.mean_w()[:, None].repeat(1, G.n_latent, 1), talk_map)
    from pipeline.models.render import render
    from pipeline.talk.talking_head import read_landmarks

    widest = np.zeros((1, 3))
    widest[0, MEASURES.index("open")] = talk_map.limits[0, 1]
    wplus = G.mean_w()[:, None].repeat(1, G.n_latent, 1)
    opened = render(G, wplus + talk_map.offsets(widest, G.n_latent), None, 1)
    opening = measures(read_landmarks(np.concatenate([head.still[None], opened]), head.box))[:, MEASURES.index("open")]
    assert opening[1] > opening[0], f"the mouth did not open: {opening.round(3)}"


def test_a_closed_mouth_read_as_parted_is_not_taken_for_an_open_one():
    from pipeline.talk.talking_head import mouth_is_open

    image = np.full((200, 200, 3), 200, np.uint8)
    shape = closed(load_talk_model().mean_face)
    params = np.zeros(len(PARAMS))
    params[PARAMS.index("open")] = 0.12
    parted = articulate(shape, params)
    # Eyes 60 px apart around (100, 80): the face in pixels.
    points = parted * 60 + [100, 80]
    lips = np.round(points[48:60]).astype(np.int32)
    import cv2

    cv2.fillPoly(image, [lips], (170, 90, 90))  # lips, and the "gap" the same colour: a closed mouth
    assert not mouth_is_open(image, points)
    cv2.fillPoly(image, [np.round(points[60:68]).astype(np.int32)], (40, 20, 20))  # a dark opening
    assert mouth_is_open(image, points)


def test_a_closed_still_read_as_parted_is_not_squeezed_shut(model):
    from pipeline.talk.mouth import inner_gap, with_opening
    from pipeline.talk.talking_head import MISREAD_CLOSE, frame_targets

    _, G = model
    head = prepare(G, G.mean_w()[:, None].repeat(1, G.n_latent, 1), principal_talk_map(G))
    assert not head.mouth_open
    # dlib put the inner lips of this closed mouth 0.15 of the eye distance apart (the lower
    # ones on a chin crease): silence must not pull the chin up into the lips.
    shape = head.shape
    head.canvas.landmarks[:] = head.canvas.frame.invert(with_opening(shape[None], shape, [inner_gap(shape) + 0.15])[0])
    rest = closed(head.shape)
    targets, _ = frame_targets(head, np.repeat(rest[None], 5, axis=0), rest, keep_expression=True)
    moved = np.abs(targets[:, 48:68] - head.canvas.landmarks[48:68]).max()
    assert moved <= MISREAD_CLOSE * head.iod + 0.5


def test_lip_misread_as_opening_stays_lip_when_the_mouth_opens(model):
    from dataclasses import replace

    from pipeline.talk.mouth import with_opening

    _, G = model
    head = prepare(G, G.mean_w()[:, None].repeat(1, G.n_latent, 1), principal_talk_map(G))
    lip = 0.15  # dlib's inner lips this far apart on a closed mouth: it is lip
    interior = replace(head.interior, still_gap=lip, lip=lip)
    shape = closed(head.shape)
    target = head.canvas.frame.invert(with_opening(shape[None], shape, [lip + 0.15])[0])
    frame = np.full_like(head.canvas.image, 200)
    out = interior.fill(frame, target, head.iod).astype(int)
    x = int(round(target[62, 0]))
    y_lip = int(round(target[62, 1] + 0.5 * lip * head.iod))  # in the misread lip band
    y_open = int(round(target[62, 1] + (lip + 0.075) * head.iod))  # in the real opening below it
    assert np.abs(out[y_lip, x] - 200).max() <= 2, "the lip was painted over"
    assert out[y_open, x].mean() < 150, "the opening below the lip is drawn"


def test_talk_command_from_a_photo_talks_at_its_resolution(model, tmp_path, capsys):
    from pipeline.talk.video import read_frames

    photo = "tests/data/faces/astronaut.png"
    out = tmp_path / "astronaut.mp4"
    args = ["talk", photo, "--text", "Hello there.", "--out", str(out), "--no-head-motion", "--keep-expression"]
    assert main([*args, "--paste-back", photo]) == 0
    capsys.readouterr()
    from pipeline.faces.images import load_image

    frames = read_frames(out)
    assert frames.shape[1:3] == load_image(photo).shape[:2]  # the whole photo, at its own size
    # Without head motion, a corner far from the face stays the photo (up to the video's compression).
    corner = frames[:, :40, :40].astype(int)
    assert np.abs(corner - corner[0]).max() <= 6


def test_a_large_photo_talks_at_the_canvas_limit(model, tmp_path):
    import cv2

    from pipeline.faces.align import align_face
    from pipeline.faces.detection import find_faces
    from pipeline.faces.images import load_image
    from pipeline.talk.frames import MAX_CANVAS_SIDE

    _, G = model
    photo = load_image("tests/data/faces/astronaut.png")
    big = cv2.resize(photo, (1500, 1500), interpolation=cv2.INTER_CUBIC)
    aligned = align_face(big, find_faces(big)[0], "utkface", 64)
    wplus = G.mean_w()[:, None].repeat(1, G.n_latent, 1)
    result = talk_video(G, wplus, principal_talk_map(G), tmp_path / "big.mp4", text="Hi.", photo=(big, aligned))
    assert result.frames.shape[1:3] == (MAX_CANVAS_SIDE, MAX_CANVAS_SIDE)


def test_shut_lids_read_as_closed_eyes_on_a_photo():
    from pipeline.faces.detection import find_faces
    from pipeline.faces.face_geometry import eye_aspect_ratio, inter_ocular
    from pipeline.faces.images import load_image
    from pipeline.talk.frames import close_lids

    photo = load_image("tests/data/faces/astronaut.png")
    face = find_faces(photo)[0]
    iod = inter_ocular(face.landmarks)
    assert close_lids(photo, face.landmarks, 0.0, iod) is photo
    shut = close_lids(photo, face.landmarks, 1.0, iod)
    # dlib, which never saw how the lids were drawn, reads the eyes as closed.
    read = find_faces(shut)[0].landmarks
    assert eye_aspect_ratio(read) < 0.5 * eye_aspect_ratio(face.landmarks)
    # Only the eyes changed: nothing below the nose tip or far above the brows.
    changed = np.flatnonzero((shut != photo).any(axis=-1).any(axis=1))
    assert changed.min() > face.landmarks[17:27, 1].min() - 0.3 * iod
    assert changed.max() < face.landmarks[30, 1]
