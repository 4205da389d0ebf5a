"""Speech audio in: decoding uploads, a speech detector, and MFCC windows per video frame.

Everything downstream works on 16 kHz mono float32 waves. Uploads are decoded with
libsndfile (wav, flac, ogg, mp3) or, for other containers (m4a, ...), with the ffmpeg
binary that imageio-ffmpeg ships, and refused with a one-line reason when they are
empty, undecodable, too long, silent or hold no speech.
"""

from __future__ import annotations

import io
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import limits
from ..errors import UserError

SAMPLE_RATE = 16_000
FPS = 25  # video frame rate the features and landmark tracks are aligned to
HOP = SAMPLE_RATE // 100  # 10 ms analysis hop: 4 hops per video frame
FORMATS = "wav, mp3, ogg, flac or m4a"

# Speech detector (see :func:`speech_stats`); thresholds measured on read speech,
# espeak-ng output and kitchen noise (numbers in tests/test_speech.py).
SILENCE_DBFS = -50.0  # loudest 40 ms frame quieter than this: silent
ACTIVE_RANGE_DB = 30.0  # frames within 30 dB of the loud frames count as active
PERIODICITY = 0.7  # normalised autocorrelation peak that makes a frame voiced
PITCH_RANGE_HZ = (80.0, 400.0)  # voice pitch range searched for periodicity
MIN_VOICED_SECONDS = 0.3
MIN_VOICED_SHARE = 0.2  # of active frames
MIN_LEVEL_SPREAD_DB = 4.0  # speech level rises and falls with syllables; a steady tone does not

# MFCC features (see :func:`audio_features`).
N_MFCC = 20
CONTEXT_HOPS = 12  # each video frame sees +-120 ms of audio: enough for anticipatory coarticulation
WINDOW = 2 * CONTEXT_HOPS + 1
FEATURE_DIMS = 2 * N_MFCC  # MFCCs and their deltas


def frame_count(n_samples: int, sr: int = SAMPLE_RATE, fps: int = FPS) -> int:
    """Video frames that cover ``n_samples`` of audio (the last one may be partly past the end)."""
    return max(1, int(np.ceil(n_samples * fps / sr - 1e-9)))


def to_mono_16k(wave: np.ndarray, sr: int) -> np.ndarray:
    """(samples,) or (samples, channels) at any rate -> (samples,) float32 at 16 kHz."""
    import soxr

    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if sr != SAMPLE_RATE:
        wave = soxr.resample(wave, sr, SAMPLE_RATE).astype(np.float32)
    return np.ascontiguousarray(wave)


def _too_long(seconds: float, limit: float) -> UserError:
    return UserError(
        f"the audio is {seconds:.1f} s long; the limit is {limit:g} s (trim it, or raise STUDIO_MAX_AUDIO_SECONDS)"
    )


def _decode_soundfile(data: bytes, limit: float) -> np.ndarray | None:
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            seconds = f.frames / f.samplerate
            if seconds > limit:
                raise _too_long(seconds, limit)
            wave, sr = f.read(dtype="float32", always_2d=True), f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    return to_mono_16k(wave, sr)


def _decode_ffmpeg(data: bytes, limit: float) -> np.ndarray | None:
    """Decode any container ffmpeg knows, reading at most a little past the limit."""
    import imageio_ffmpeg

    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", "pipe:0", "-t", f"{limit + 0.5:.2f}",
        "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "pipe:1",
    ]  # fmt: skip
    try:
        out = subprocess.run(cmd, input=data, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0 or not out.stdout:
        return None
    wave = np.frombuffer(out.stdout, dtype="<f4").astype(np.float32)
    if len(wave) > limit * SAMPLE_RATE:
        raise _ffmpeg_too_long(out.stderr, limit)
    return wave


def _ffmpeg_too_long(stderr: bytes, limit: float) -> UserError:
    """The 'too long' error with the container's stated duration when ffmpeg printed one."""
    text = stderr.decode("utf-8", "replace")
    marker = text.find("Duration: ")
    if marker >= 0:
        try:
            h, m, s = text[marker + 10 : marker + 21].split(":")
            return _too_long(int(h) * 3600 + int(m) * 60 + float(s), limit)
        except ValueError:
            pass
    return UserError(f"the audio is longer than the {limit:g} s limit (trim it, or raise STUDIO_MAX_AUDIO_SECONDS)")


def load_audio(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """An uploaded file (path or bytes) -> 16 kHz mono float32 wave, refused when unusable.

    Refuses empty, undecodable and over-long files, silence and audio without speech.
    """
    if isinstance(source, bytes):
        data, name = source, name or "the audio"
    else:
        path = Path(source)
        name = name or path.name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UserError(f"audio file not found: {path}") from None
        except IsADirectoryError:
            raise UserError(f"{path} is a folder, not an audio file") from None
    if not data:
        raise UserError(f"{name} is empty")
    limit = limits.audio_seconds()
    wave = _decode_soundfile(data, limit)
    if wave is None:
        wave = _decode_ffmpeg(data, limit)
    if wave is None:
        raise UserError(f"cannot decode {name} as audio (use {FORMATS})")
    if len(wave) < SAMPLE_RATE // 10:
        raise UserError(f"{name} is too short ({len(wave) / SAMPLE_RATE:.2f} s); speak for at least a second")
    if not np.isfinite(wave).all():
        raise UserError(f"{name} holds invalid samples (NaN or infinity)")
    require_speech(wave, name=name)
    return wave


@dataclass
class SpeechStats:
    """What the speech detector measured; every field is explainable on its own."""

    seconds: float
    peak_dbfs: float  # level of the loudest 40 ms frame
    active_share: float  # frames within ACTIVE_RANGE_DB of the loud frames
    voiced_seconds: float  # active frames that are periodic at a voice pitch
    voiced_share: float  # voiced / active
    level_spread_db: float  # standard deviation of the level over active frames

    @property
    def silent(self) -> bool:
        return self.peak_dbfs < SILENCE_DBFS

    @property
    def is_speech(self) -> bool:
        return (
            not self.silent
            and self.voiced_seconds >= MIN_VOICED_SECONDS
            and self.voiced_share >= MIN_VOICED_SHARE
            and self.level_spread_db >= MIN_LEVEL_SPREAD_DB
        )

    def to_dict(self) -> dict:
        return {k: round(v, 3) for k, v in asdict(self).items()} | {"is_speech": self.is_speech}


def _frames(wave: np.ndarray, length: int) -> np.ndarray:
    """(n_hops, length) frames centred every 10 ms (zero padded at the ends)."""
    padded = np.pad(wave, (length // 2, length // 2))
    n = 1 + (len(padded) - length) // HOP
    idx = np.arange(length)[None, :] + HOP * np.arange(n)[:, None]
    return padded[idx]


def frame_levels_db(wave: np.ndarray, length: int = 640) -> np.ndarray:
    """RMS level in dBFS of 40 ms frames every 10 ms."""
    frames = _frames(wave, length)
    return 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)


def periodicity(frames: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Peak normalised autocorrelation in the voice pitch range, per frame (0 noise .. 1 periodic).

    Autocorrelation of a Hann-windowed frame, divided by that of the window itself
    (Boersma's correction) so a periodic frame scores near 1 at any lag.
    """
    length = frames.shape[1]
    window = np.hanning(length)
    x = (frames - frames.mean(axis=1, keepdims=True)) * window
    ac = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * length)) ** 2)[:, :length]
    ac_window = np.fft.irfft(np.abs(np.fft.rfft(window, 2 * length)) ** 2)[:length]
    r = (ac / (ac[:, :1] + 1e-12)) / (ac_window / ac_window[0])
    lo, hi = int(sr / PITCH_RANGE_HZ[1]), int(sr / PITCH_RANGE_HZ[0])
    return r[:, lo : hi + 1].max(axis=1)


def speech_stats(wave: np.ndarray, sr: int = SAMPLE_RATE) -> SpeechStats:
    """Energy, voicing and level modulation of a 16 kHz wave (see :class:`SpeechStats`).

    Speech is loud enough, largely voiced (periodic at 80-400 Hz, which broadband
    noise such as running water and clattering dishes is not) and rises and falls
    with the syllables (which a steady hum or tone does not).
    """
    if sr != SAMPLE_RATE:
        wave, sr = to_mono_16k(wave, sr), SAMPLE_RATE
    length = int(0.04 * sr)
    frames = _frames(np.asarray(wave, dtype=np.float32), length)
    levels = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    peak = float(np.percentile(levels, 99))
    active = levels > max(peak - ACTIVE_RANGE_DB, SILENCE_DBFS - 10)
    voiced = active & (periodicity(frames, sr) > PERIODICITY)
    n_active = max(1, int(active.sum()))
    return SpeechStats(
        seconds=len(wave) / sr,
        peak_dbfs=peak,
        active_share=float(active.mean()),
        voiced_seconds=float(voiced.sum() * HOP / sr),
        voiced_share=float(voiced.sum() / n_active),
        level_spread_db=float(levels[active].std()) if active.any() else 0.0,
    )


def require_speech(wave: np.ndarray, sr: int = SAMPLE_RATE, name: str = "the audio") -> SpeechStats:
    """:func:`speech_stats`, raising a :class:`UserError` that says why when it is not speech."""
    stats = speech_stats(wave, sr)
    if stats.silent:
        raise UserError(f"{name} is silent (loudest part {stats.peak_dbfs:.0f} dBFS)")
    if not stats.is_speech:
        raise UserError(
            f"no speech found in {name} (voiced {stats.voiced_seconds:.1f} s, {100 * stats.voiced_share:.0f}% "
            "of the sound); upload a recording of a voice"
        )
    return stats


def mfcc(wave: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """(hops, FEATURE_DIMS) MFCCs and deltas every 10 ms, cepstral mean removed.

    Mean removal makes the features independent of gain and of a fixed channel
    colouring (microphone, room), which is most of the gap between synthetic and
    recorded speech.
    """
    import librosa

    if sr != SAMPLE_RATE:
        wave, sr = to_mono_16k(wave, sr), SAMPLE_RATE
    wave = np.asarray(wave, dtype=np.float32)
    coeffs = librosa.feature.mfcc(
        y=wave, sr=sr, n_mfcc=N_MFCC, n_fft=512, win_length=400, hop_length=HOP, n_mels=40, fmin=50, fmax=7600
    )
    coeffs -= coeffs.mean(axis=1, keepdims=True)
    deltas = librosa.feature.delta(coeffs, width=5, mode="nearest")
    return np.concatenate([coeffs, deltas]).T.astype(np.float32)


def frame_windows(hops: np.ndarray, n_frames: int, fps: int = FPS) -> np.ndarray:
    """(hops, dims) features every 10 ms -> (n_frames, WINDOW, dims) windows centred on each video frame."""
    centres = np.round((np.arange(n_frames) + 0.5) * (SAMPLE_RATE / fps) / HOP).astype(int)
    idx = centres[:, None] + np.arange(-CONTEXT_HOPS, CONTEXT_HOPS + 1)[None, :]
    return hops[np.clip(idx, 0, len(hops) - 1)]


def audio_features(wave: np.ndarray, sr: int = SAMPLE_RATE, fps: int = FPS) -> np.ndarray:
    """(frames, WINDOW, FEATURE_DIMS): for each video frame, the MFCC hops within +-120 ms of its centre.

    Frame ``i`` covers ``[i / fps, (i + 1) / fps)`` of the audio; there are
    :func:`frame_count` frames.
    """
    if sr != SAMPLE_RATE:
        wave, sr = to_mono_16k(wave, sr), SAMPLE_RATE
    return frame_windows(mfcc(wave, sr), frame_count(len(wave), sr, fps), fps)


def envelope(wave: np.ndarray, sr: int = SAMPLE_RATE, fps: int = FPS) -> np.ndarray:
    """(frames,) speech level in dB relative to the loudest frame, one value per video frame."""
    if sr != SAMPLE_RATE:
        wave, sr = to_mono_16k(wave, sr), SAMPLE_RATE
    levels = frame_levels_db(np.asarray(wave, dtype=np.float32))
    n_frames = frame_count(len(wave), sr, fps)
    per = sr // fps // HOP
    idx = np.clip(np.arange(n_frames)[:, None] * per + np.arange(per)[None, :], 0, len(levels) - 1)
    frame_db = 10 * np.log10(np.mean(10 ** (levels[idx] / 10), axis=1) + 1e-12)
    return (frame_db - frame_db.max()).astype(np.float32)
