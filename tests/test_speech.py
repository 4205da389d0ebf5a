"""Speech in: espeak-ng synthesis with phoneme timings, audio intake and the speech detector, MFCC windows."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf

from pipeline.errors import UserError
from pipeline.talk.audio import FEATURE_DIMS, SAMPLE_RATE, WINDOW, audio_features, frame_count, load_audio, speech_stats
from pipeline.talk.speech import synthesize, synthesize_many

AUDIO = Path(__file__).parent / "data" / "audio"
SPEECH_CLIPS = [AUDIO / "cmu_arctic_us_aew_a0001.wav", AUDIO / "cmu_arctic_us_axb_a0004.wav"]
NOISE = AUDIO / "noise_doing_the_dishes_50s-53s.wav"
PANGRAM = "The quick brown fox jumps over the lazy dog."


# ---- text to speech --------------------------------------------------------------------


def test_tts_makes_speech_of_plausible_length_with_phoneme_timings():
    speech = synthesize(PANGRAM, voice="en-us", wpm=160)
    # 9 words at 160 wpm: about 3.4 s; espeak-ng adds short pauses at the ends.
    assert 2.0 < speech.seconds < 5.0
    assert speech.wave.dtype == np.float32 and np.abs(speech.wave).max() > 0.05
    symbols = [p.symbol for p in speech.phonemes]
    assert len(symbols) > 25
    assert {"k", "w", "b", "f", "s", "m", "D"} <= set(symbols)  # quick, brown, fox, jumps, the
    starts = [p.start for p in speech.phonemes]
    assert starts == sorted(starts)
    assert all(p.end > p.start for p in speech.phonemes)
    assert speech.phonemes[-1].end <= speech.seconds + 1e-3
    assert speech_stats(speech.wave).is_speech


def test_tts_options_change_the_speech():
    slow, fast, low, high = synthesize_many(
        [
            {"text": PANGRAM, "wpm": 110},
            {"text": PANGRAM, "wpm": 300},
            {"text": PANGRAM, "voice": "en-gb+m3", "pitch": 10},
            {"text": PANGRAM, "voice": "en-gb+f3", "pitch": 90},
        ]
    )
    assert slow.seconds > 1.8 * fast.seconds
    assert low.voice == "en-gb+m3" and high.voice == "en-gb+f3"
    assert not np.allclose(low.wave[:8000], high.wave[:8000])


@pytest.mark.parametrize("prompt", ["", "   \n\t  "])
def test_empty_prompt_is_refused(prompt):
    with pytest.raises(UserError, match="empty"):
        synthesize(prompt)


def test_long_prompt_is_refused_with_the_limit(monkeypatch):
    with pytest.raises(UserError, match="10000 characters long; the limit is 300"):
        synthesize("a" * 10_000)
    monkeypatch.setenv("STUDIO_MAX_PROMPT_CHARS", "20")
    with pytest.raises(UserError, match="limit is 20"):
        synthesize("This sentence is longer than twenty characters.")


def test_shell_metacharacters_are_spoken_not_run(tmp_path):
    marker = tmp_path / "pwned"
    prompt = f"$(touch {marker}); rm -rf {tmp_path} && echo `id` > {tmp_path}/x | cat; --help -v [[h@l]] <b>"
    speech = synthesize(prompt)
    assert not marker.exists() and not (tmp_path / "x").exists() and tmp_path.exists()
    assert speech.seconds > 3 and len(speech.phonemes) > 40  # the characters were read out


@pytest.mark.parametrize("voice", ["en-us; rm -rf /", "--help", "xx-no-such-voice"])
def test_bad_voice_is_refused(voice):
    with pytest.raises(UserError, match="voice"):
        synthesize("Hello.", voice=voice)


def test_bad_speed_and_pitch_are_refused():
    with pytest.raises(UserError, match="words per minute"):
        synthesize("Hello.", wpm=5)
    with pytest.raises(UserError, match="pitch"):
        synthesize("Hello.", pitch=500)


# ---- audio intake and the speech detector --------------------------------------------------------


@pytest.mark.parametrize("path", SPEECH_CLIPS, ids=lambda p: p.stem)
def test_natural_speech_is_accepted(path):
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - sf.info(str(path)).frames) < 2  # already 16 kHz mono
    stats = speech_stats(wave)
    assert stats.voiced_share > 0.5 and stats.voiced_seconds > 1.5


def test_kitchen_noise_is_refused_as_no_speech():
    stats = speech_stats(sf.read(str(NOISE), dtype="float32")[0])
    assert stats.peak_dbfs > -20  # loud, not silent
    assert stats.voiced_share < 0.05
    with pytest.raises(UserError, match="no speech found"):
        load_audio(NOISE)


def test_speech_in_moderate_noise_is_still_speech():
    speech = sf.read(str(SPEECH_CLIPS[0]), dtype="float32")[0]
    noise = np.resize(sf.read(str(NOISE), dtype="float32")[0], len(speech))
    gain = np.sqrt(np.mean(speech**2) / np.mean(noise**2) / 10 ** (10 / 10))  # 10 dB SNR
    assert speech_stats(speech + gain * noise).is_speech


def _write(path: Path, wave: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    sf.write(str(path), wave, sr, subtype="PCM_16")
    return path


def test_silence_is_refused(tmp_path):
    with pytest.raises(UserError, match="silent"):
        load_audio(_write(tmp_path / "silence.wav", np.zeros(3 * SAMPLE_RATE)))
    quiet_hiss = np.random.default_rng(0).normal(0, 1e-4, 3 * SAMPLE_RATE)
    with pytest.raises(UserError, match="silent"):
        load_audio(_write(tmp_path / "hiss.wav", quiet_hiss))


def test_steady_tone_is_refused(tmp_path):
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    hum = 0.3 * np.sin(2 * np.pi * 150 * t) + 0.1 * np.sin(2 * np.pi * 300 * t)
    with pytest.raises(UserError, match="no speech found"):
        load_audio(_write(tmp_path / "hum.wav", hum))


def test_non_audio_and_empty_files_are_refused(tmp_path):
    with pytest.raises(UserError, match="cannot decode"):
        load_audio(b"%PDF-1.4 this is not audio at all\n" * 200, name="notes.pdf")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    with pytest.raises(UserError, match="not found"):
        load_audio(tmp_path / "missing.wav")


def test_ten_minutes_is_refused_as_too_long(tmp_path):
    long = _write(tmp_path / "long.wav", np.zeros(600 * SAMPLE_RATE, dtype=np.float32))
    with pytest.raises(UserError, match=r"600\.0 s long; the limit is 20 s"):
        load_audio(long)


def _ffmpeg_convert(src: Path, dst: Path, *args: str) -> Path:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), *args, str(dst)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return dst


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3", "m4a"])
def test_compressed_formats_decode_to_16k_mono(tmp_path, fmt):
    src = SPEECH_CLIPS[1]
    # 44.1 kHz stereo, so resampling and down-mixing are exercised too.
    out = _ffmpeg_convert(src, tmp_path / f"clip.{fmt}", "-ac", "2", "-ar", "44100")
    wave = load_audio(out)
    expected = sf.info(str(src)).frames
    assert abs(len(wave) - expected) < 0.05 * SAMPLE_RATE  # codecs pad a few ms


def test_long_m4a_is_refused(tmp_path, monkeypatch):
    out = _ffmpeg_convert(SPEECH_CLIPS[0], tmp_path / "clip.m4a")
    monkeypatch.setenv("STUDIO_MAX_AUDIO_SECONDS", "2")
    with pytest.raises(UserError, match="limit is 2 s"):
        load_audio(out)


# ---- features ------------------------------------------------------------------------------------


def test_mfcc_windows_match_25fps_frames():
    wave = load_audio(SPEECH_CLIPS[0])
    feats = audio_features(wave)
    assert len(wave) == 62081  # 3.88 s: 97.002 frames of 640 samples, so 98 frames cover it
    assert feats.shape == (98, WINDOW, FEATURE_DIMS) == (frame_count(len(wave)), WINDOW, FEATURE_DIMS)
    assert np.isfinite(feats).all()
    # Neighbouring frames share most of their window, shifted by 4 hops (40 ms).
    np.testing.assert_array_equal(feats[10, 4:], feats[11, :-4])
    # The same duration at another rate gives the same frames.
    assert audio_features(np.repeat(wave, 3), sr=48_000).shape == feats.shape


@pytest.mark.parametrize("seconds,frames", [(0.5, 13), (1.0, 25), (2.01, 51)])
def test_frame_count(seconds, frames):
    assert frame_count(int(seconds * SAMPLE_RATE)) == frames
