"""Speech to mouth landmarks: the landmark frame, the articulation model, visemes, AT-net, the baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import UserError
from pipeline.talk import visemes
from pipeline.talk.atnet import (
    DEFAULT_WEIGHTS,
    ATNet,
    ATNetConfig,
    TalkModel,
    baseline_mouth_track,
    baseline_params,
    load_talk_model,
    phoneme_mouth_track,
    speech_track,
)
from pipeline.talk.audio import FEATURE_DIMS, WINDOW, envelope, frame_count, load_audio
from pipeline.talk.mouth import MOUTH, PARAMS, ShapeModel, articulate, closed, inner_gap, normalise
from pipeline.talk.speech import Phoneme, synthesize
from pipeline.training.atnet_data import fit_shape_model, random_articulations

AUDIO = Path(__file__).parent / "data" / "audio"
CLIP = AUDIO / "cmu_arctic_us_aew_a0001.wav"


def face() -> np.ndarray:
    """A plausible 68-point face in pixels: eyes level, mouth slightly open (as in a photo)."""
    pts = np.zeros((68, 2))
    pts[0:17, 0] = np.linspace(-1.1, 1.1, 17)
    pts[0:17, 1] = 1.78 - 1.75 * (np.linspace(-1, 1, 17) ** 2)
    pts[17:27] = np.c_[np.linspace(-0.9, 0.9, 10), np.full(10, -0.35)]
    pts[27:36] = np.c_[np.zeros(9), np.linspace(0.1, 0.7, 9)]
    pts[36:42] = np.c_[np.linspace(-0.65, -0.35, 6), np.zeros(6)]
    pts[42:48] = np.c_[np.linspace(0.35, 0.65, 6), np.zeros(6)]
    outer_x = np.array([-0.45, -0.29, -0.12, 0.0, 0.12, 0.29, 0.45, 0.30, 0.13, 0.0, -0.13, -0.29])
    outer_y = np.array([1.02, 0.96, 0.93, 0.95, 0.93, 0.96, 1.02, 1.19, 1.26, 1.28, 1.26, 1.19])
    pts[48:60] = np.c_[outer_x, outer_y]
    inner_x = np.array([-0.39, -0.12, 0.0, 0.12, 0.39, 0.12, 0.0, -0.12])
    inner_y = np.array([1.03, 1.02, 1.03, 1.02, 1.03, 1.10, 1.11, 1.10])  # a 0.08 IOD gap
    pts[60:68] = np.c_[inner_x, inner_y]
    angle = np.radians(8)  # a tilted head, 120 px between the eyes, somewhere in the photo
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return pts @ rot.T * 120 + [300, 200]


# ---- landmark frame and articulation -----------------------------------------------------------


def test_normalise_puts_eyes_level_one_unit_apart_and_inverts():
    pixels = face()
    norm, transform = normalise(pixels)
    left, right = norm[36:42].mean(0), norm[42:48].mean(0)
    np.testing.assert_allclose((left + right) / 2, 0, atol=1e-9)
    np.testing.assert_allclose(right - left, [1, 0], atol=1e-9)
    assert norm[8, 1] > 1.5  # chin below the eyes
    np.testing.assert_allclose(transform.invert(norm), pixels, atol=1e-9)


def test_closed_then_opened_mouth():
    rest = closed(normalise(face())[0])
    assert inner_gap(rest) == pytest.approx(0, abs=1e-9)
    gaps = [inner_gap(articulate(rest, [o, 0, 0, 0, 0])) for o in (0.0, 0.1, 0.2, 0.3)]
    assert gaps[0] == pytest.approx(0, abs=1e-9)
    assert np.all(np.diff(gaps) > 0.08)  # about the requested centre gap, less at the sides
    opened = articulate(rest, [0.3, 0, 0, 0, 0])
    assert opened[8, 1] - rest[8, 1] > 0.1  # the chin drops
    assert abs(opened[0, 1] - rest[0, 1]) < 0.01  # the jaw hinges near the ears


def test_spread_round_tuck_press_move_the_lips_the_right_way():
    rest = closed(normalise(face())[0])
    width = lambda s: s[54, 0] - s[48, 0]  # noqa: E731
    lower_lip = lambda s: s[57, 1]  # noqa: E731
    upper_lip = lambda s: s[51, 1]  # noqa: E731
    p = {name: np.eye(5)[i] for i, name in enumerate(PARAMS)}
    assert width(articulate(rest, 0.2 * p["spread"])) > 1.15 * width(rest)
    assert width(articulate(rest, p["round"])) < 0.8 * width(rest)  # rounded lips: a quarter narrower
    assert lower_lip(articulate(rest, p["tuck"])) < lower_lip(rest) - 0.02  # lower lip drawn up
    pressed = articulate(rest, p["press"])
    assert upper_lip(pressed) > upper_lip(rest) and lower_lip(pressed) < lower_lip(rest)  # thinner lips


def test_shape_model_spans_articulated_faces():
    rng = np.random.default_rng(0)
    base = normalise(face())[0]
    faces = [base + rng.normal(0, 0.02, base.shape) for _ in range(40)]
    shape = fit_shape_model(np.stack(faces))
    assert 3 <= shape.size <= 60
    np.testing.assert_allclose(shape.basis @ shape.basis.T, np.eye(shape.size), atol=1e-9)
    rest = closed(faces[0])
    moved = articulate(rest, random_articulations(5, rng))
    back = shape.decode(shape.encode(moved), rest)
    assert np.abs(back - moved)[:, MOUTH].max() < 0.03
    np.testing.assert_array_equal(back[:, 17:48], moved[:, 17:48])  # eyes, brows, nose untouched


# ---- visemes -------------------------------------------------------------------------------------


def test_every_phoneme_espeak_says_has_a_viseme():
    speech = synthesize("Judge Thomas quickly fixed the broken violin, then sang with pure, soft joy. Who knew?")
    for p in speech.phonemes:
        assert p.symbol in visemes.PHONEME_VISEMES or p.symbol in visemes.PAUSES, p.symbol


def test_viseme_track_opens_for_vowels_and_closes_for_m_b_p():
    speech = synthesize("Bob met Pam. Father saw a map.", wpm=150)
    n = frame_count(len(speech.wave))
    params = visemes.phoneme_track(speech.phonemes, n)
    assert params.shape == (n, 5)
    gap = inner_gap(phoneme_mouth_track(speech.phonemes, n, normalise(face())[0]))
    times = (np.arange(n) + 0.5) / 25
    for ph in speech.phonemes:
        inside = (times >= ph.start) & (times < ph.end)
        if ph.symbol in ("m", "b", "p") and inside.any():
            assert gap[inside].min() < 0.005, ph  # lips shut
        if ph.symbol in ("a", "A:", "aa", "O:") and inside.any():
            assert gap[inside].max() > 0.15, ph  # jaw open
    assert gap[0] < 0.02  # closed before speaking
    pauses = [p for p in speech.phonemes if p.symbol.startswith("_") and p.end - p.start > 0.15]
    assert pauses  # the full stop after "Pam"
    for pause in pauses:
        assert gap[int((pause.start + pause.end) / 2 * 25)] < 0.03  # and in the middle of a pause


def test_short_closure_is_still_seen():
    # A 15 ms "b" between two long "a"s still gets a fully closed frame at 25 fps.
    phonemes = [Phoneme("a", 0.0, 0.3), Phoneme("b", 0.3, 0.315), Phoneme("a", 0.315, 0.6)]
    params = visemes.phoneme_track(phonemes, 15)
    assert params[:, PARAMS.index("open")].min() == 0.0
    assert params[:, PARAMS.index("press")].max() == 1.0


def test_rounding_starts_before_the_rounded_vowel():
    phonemes = [Phoneme("s", 0.0, 0.2), Phoneme("u:", 0.2, 0.4), Phoneme("_", 0.4, 0.8)]
    params = visemes.phoneme_track(phonemes, 20)
    rnd = params[:, PARAMS.index("round")]
    assert rnd[4] > 0.05  # 0.16-0.2 s, still in the "s"
    assert rnd[7] > 0.8  # inside the "u:"


# ---- AT-net and the baseline -----------------------------------------------------------------


def tiny_model() -> TalkModel:
    torch.manual_seed(0)
    base = normalise(face())[0]
    rng = np.random.default_rng(0)
    shape = fit_shape_model(np.stack([base + rng.normal(0, 0.02, base.shape) for _ in range(20)]))
    net = ATNet(ATNetConfig(shape_dims=shape.size, audio_dims=16, identity_dims=4, hidden=8))
    return TalkModel(net=net, shape=shape, mean_face=closed(base), info={"test": True})


def test_atnet_shapes_and_save_load(tmp_path):
    model = tiny_model()
    k = model.shape.size
    out = model.net(torch.randn(2, 7, WINDOW, FEATURE_DIMS), torch.randn(2, k))
    assert out.shape == (2, 7, k)
    wave = load_audio(CLIP)
    track = model.mouth_track(wave)
    assert track.shape == (frame_count(len(wave)), 68, 2) and np.isfinite(track).all()
    model.save(tmp_path / "atnet.safetensors")
    loaded = load_talk_model(tmp_path / "atnet.safetensors")
    assert loaded.info == {"test": True}
    np.testing.assert_allclose(loaded.mouth_track(wave), track, atol=1e-5)


def test_missing_or_bad_weights_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_talk_model(tmp_path / "none.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot read"):
        load_talk_model(tmp_path / "bad.safetensors")


def test_baseline_follows_the_speech_level():
    wave = load_audio(CLIP)
    params = baseline_params(wave)
    level = envelope(wave)
    assert params.shape == (len(level), 5)
    opening = params[:, 0]
    assert np.corrcoef(opening, np.clip(level, -40, 0))[0, 1] > 0.7
    assert opening[level < -45].max(initial=0) < 0.02  # closed in silence
    track = baseline_mouth_track(wave, normalise(face())[0])
    assert track.shape == (len(level), 68, 2)


@pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="AT-net weights not trained yet")
def test_shipped_atnet_moves_the_mouth_with_speech():
    model = load_talk_model()
    assert isinstance(model.shape, ShapeModel)
    wave = load_audio(CLIP)
    gap = inner_gap(model.mouth_track(wave, normalise(face())[0]))
    level = envelope(wave)
    assert gap.shape == level.shape
    assert gap[level > -15].mean() > 0.06  # open while speaking
    assert gap[level < -35].mean() < 0.5 * gap[level > -15].mean()  # much more closed in the pauses
    assert np.corrcoef(gap, np.clip(level, -40, 0))[0, 1] > 0.3


def test_speech_track_from_text_or_audio():
    still = normalise(face())[0]
    spoken = speech_track(text="Hello there, Bob.", face=still)
    assert spoken.method == "phonemes"
    assert spoken.landmarks.shape == (frame_count(len(spoken.wave)), 68, 2)
    assert inner_gap(spoken.face) == pytest.approx(0, abs=1e-9)  # the still face's mouth is closed first
    heard = speech_track(audio=CLIP, face=still, method="baseline")
    assert heard.landmarks.shape[0] == frame_count(len(load_audio(CLIP)))
    with pytest.raises(UserError, match="type something"):
        speech_track(text="  ", face=still)
    with pytest.raises(UserError, match="not both"):
        speech_track(text="Hi", audio=CLIP, face=still)
    with pytest.raises(UserError, match="no phoneme timings"):
        speech_track(audio=CLIP, face=still, method="phonemes")
