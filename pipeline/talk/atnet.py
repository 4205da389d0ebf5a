"""Audio to mouth landmarks: AT-net (after ATVGnet's audio-transformation network) and a baseline.

AT-net reads, for each 25 fps video frame, a window of MFCCs around it, encodes it
with a small convolutional network, joins it with the PCA coefficients of the still
face's mouth and jaw, and runs an LSTM over the frames; the output is, per frame, the
change of those PCA coefficients from the still face. Landmarks are in the normalised
frame of :mod:`pipeline.talk.mouth`.

Three ways to a mouth track, one interface (``(frames, 68, 2)`` landmarks):

* :meth:`TalkModel.mouth_track`: AT-net, from any speech audio;
* :func:`phoneme_mouth_track`: from espeak-ng's exact phoneme timings, for typed text;
* :func:`baseline_mouth_track`: rule-based, the mouth opens with the speech level.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from . import visemes
from .audio import FEATURE_DIMS, SAMPLE_RATE, WINDOW, audio_features, envelope
from .mouth import PARAMS, ShapeModel, articulate, closed, inner_gap, with_opening

MODEL_NAME = "atnet"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "atnet" / "atnet.safetensors"


@dataclass(frozen=True)
class ATNetConfig:
    shape_dims: int  # PCA coefficients of the mouth and jaw
    feature_dims: int = FEATURE_DIMS
    window: int = WINDOW
    audio_dims: int = 96
    identity_dims: int = 16
    hidden: int = 128
    layers: int = 1


class AudioEncoder(nn.Module):
    """One frame's MFCC window (window, dims) -> an audio code, by convolutions over time."""

    def __init__(self, config: ATNetConfig):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv1d(config.feature_dims, 48, 5, stride=2, padding=2), nn.LeakyReLU(0.2),
            nn.Conv1d(48, 64, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        )  # fmt: skip
        length = (config.window + 1) // 2
        length = (length + 1) // 2
        self.fc = nn.Sequential(nn.Linear(64 * length, config.audio_dims), nn.LeakyReLU(0.2))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        batch = windows.shape[:-2]
        x = windows.reshape(-1, *windows.shape[-2:]).transpose(1, 2)  # (N, dims, window)
        return self.fc(self.convs(x).flatten(1)).reshape(*batch, -1)


class ATNet(nn.Module):
    """(batch, frames, window, dims) MFCC windows + (batch, K) face coefficients -> (batch, frames, K) changes.

    Inputs and outputs are standardised with statistics of the training data, kept as
    buffers so the saved file is self-contained.
    """

    def __init__(self, config: ATNetConfig):
        super().__init__()
        self.config = config
        k = config.shape_dims
        self.audio = AudioEncoder(config)
        self.identity = nn.Sequential(nn.Linear(k, config.identity_dims), nn.LeakyReLU(0.2))
        self.lstm = nn.LSTM(config.audio_dims + config.identity_dims, config.hidden, config.layers, batch_first=True)
        self.out = nn.Linear(config.hidden, k)
        self.register_buffer("feature_mean", torch.zeros(config.feature_dims))
        self.register_buffer("feature_std", torch.ones(config.feature_dims))
        self.register_buffer("shape_std", torch.ones(k))
        self.register_buffer("delta_std", torch.ones(k))

    def forward(self, windows: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        audio = self.audio((windows - self.feature_mean) / self.feature_std)
        ident = self.identity(identity / self.shape_std)
        ident = ident[:, None, :].expand(-1, audio.shape[1], -1)
        hidden, _ = self.lstm(torch.cat([audio, ident], dim=-1))
        return self.out(hidden) * self.delta_std


@dataclass
class TalkModel:
    """AT-net with the shape model it predicts in and the mean face used when no face is given."""

    net: ATNet
    shape: ShapeModel
    mean_face: np.ndarray  # (68, 2) normalised, mouth closed
    info: dict

    def predict_coefficients(self, windows: np.ndarray, face: np.ndarray) -> np.ndarray:
        """(frames, window, dims) features and a closed (68, 2) face -> (frames, K) coefficients."""
        identity = self.shape.encode(face)
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))[None]
            ident = torch.from_numpy(identity.astype(np.float32))[None]
            deltas = self.net.eval()(x, ident)[0].numpy()
        return identity + deltas

    def mouth_track(self, wave: np.ndarray, face: np.ndarray | None = None, sr: int = SAMPLE_RATE) -> np.ndarray:
        """Speech (any rate, mono) -> (frames, 68, 2) normalised landmarks at 25 fps.

        ``face``: the still face's normalised landmarks (its mouth is closed first);
        the model's mean face when None.
        """
        rest = closed(self.mean_face if face is None else face)
        coeffs = self.predict_coefficients(audio_features(wave, sr), rest)
        return self.shape.decode(coeffs, rest)

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        tensors = {f"net.{k}": v.detach().contiguous() for k, v in self.net.state_dict().items()}
        tensors |= {
            "shape.mean": torch.from_numpy(self.shape.mean.astype(np.float32)),
            "shape.basis": torch.from_numpy(self.shape.basis.astype(np.float32)),
            "shape.std": torch.from_numpy(self.shape.std.astype(np.float32)),
            "mean_face": torch.from_numpy(self.mean_face.astype(np.float32)),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"config": json.dumps(asdict(self.net.config)), "info": json.dumps(self.info), "model": MODEL_NAME}
        save_file(tensors, str(path), metadata=meta)


def load_talk_model(path: str | Path = DEFAULT_WEIGHTS) -> TalkModel:
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise UserError(f"talking-head model not found: {path} (train it with `python -m pipeline train atnet`)")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        config = ATNetConfig(**json.loads(meta["config"]))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise UserError(f"cannot read talking-head model {path.name}: {type(exc).__name__}") from None
    net = ATNet(config)
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    shape = ShapeModel(
        mean=tensors["shape.mean"].double().numpy(),
        basis=tensors["shape.basis"].double().numpy(),
        std=tensors["shape.std"].double().numpy(),
    )
    return TalkModel(
        net=net.eval(),
        shape=shape,
        mean_face=tensors["mean_face"].double().numpy(),
        info=json.loads(meta.get("info", "{}")),
    )


@dataclass
class SpeechTrack:
    """Speech and the mouth landmarks that go with it, ready to render at 25 fps."""

    wave: np.ndarray  # (samples,) float32 at SAMPLE_RATE
    landmarks: np.ndarray  # (frames, 68, 2) normalised
    method: str  # "atnet", "phonemes" or "baseline"
    face: np.ndarray  # (68, 2) the closed still face the track moves


METHODS = ("atnet", "phonemes", "baseline")


def speech_track(
    text: str | None = None,
    audio: str | Path | bytes | None = None,
    face: np.ndarray | None = None,
    voice: str = "en-us",
    wpm: int = 160,
    pitch: int = 50,
    method: str | None = None,
    model: TalkModel | None = None,
) -> SpeechTrack:
    """Typed text (spoken by espeak-ng) or an uploaded recording -> speech + mouth track.

    ``face``: normalised (68, 2) landmarks of the still face (see
    :func:`pipeline.talk.mouth.normalise`); the model's mean face when None. ``method``:
    ``phonemes`` (default for text: espeak-ng's exact timings through the viseme
    table), ``atnet`` (default for audio), or ``baseline``.
    """
    from .audio import frame_count, load_audio
    from .speech import synthesize

    if (text is None or not text.strip()) == (audio is None):
        raise UserError("give either text to say or an audio clip, not both" if audio is not None else
                        "type something to say, or upload an audio clip")  # fmt: skip
    method = method or ("atnet" if audio is not None else "phonemes")
    if method not in METHODS:
        raise UserError(f"unknown lip-sync method {method!r}; choose from {', '.join(METHODS)}")
    if method == "phonemes" and audio is not None:
        raise UserError("recordings have no phoneme timings: use atnet or baseline for audio")
    speech = synthesize(text, voice=voice, wpm=wpm, pitch=pitch) if audio is None else None
    wave = speech.wave if speech is not None else load_audio(audio)
    if model is None and (face is None or method == "atnet"):
        model = load_talk_model()
    rest = closed(model.mean_face if face is None else face)
    if method == "atnet":
        landmarks = model.mouth_track(wave, rest)
    elif method == "phonemes":
        landmarks = phoneme_mouth_track(speech.phonemes, frame_count(len(wave)), rest)
    else:
        landmarks = baseline_mouth_track(wave, rest)
    return SpeechTrack(wave=wave, landmarks=calibrated(landmarks, rest, method), method=method, face=rest)


# Real read speech: the lips open to about a third of the mouth's width on open vowels and meet
# on m, b, p and in pauses. Tracks predicted from audio regress towards the mean (an LSTM trained
# with a squared error smooths the extremes away), so their opening is stretched to that range.
SPEECH_OPEN_P90 = 0.36  # IOD: inner-lip gap of the 90th-percentile frame (mouth width is about 0.9 IOD;
# dlib reads about 0.8 of the drawn gap back from the frames, so a third of the width as seen)
MAX_OPEN = 0.45  # IOD: no jaw opens further while talking
MAX_GAIN = 3.0
MAX_PHONEME_GAIN = 2.0  # the viseme table is in real units, but co-articulation takes its peaks off: typed
# and recorded speech are brought to the same range
QUIET_PERCENTILE = 10  # audio tracks: the quietest tenth of the frames is lips together


def calibrated(track: np.ndarray, rest: np.ndarray, method: str) -> np.ndarray:
    """A mouth track with its opening brought to real speech's range (see :data:`SPEECH_OPEN_P90`).

    Audio tracks (``atnet``, ``baseline``) rarely close fully, so their quietest frames are
    taken as closed lips; phoneme tracks already close exactly on m, b, p and are only scaled.
    """
    gaps = inner_gap(track)
    floor = np.percentile(gaps, QUIET_PERCENTILE) if method != "phonemes" else 0.0
    span = max(float(np.percentile(gaps, 90)) - floor, 1e-3)
    gain = float(np.clip(SPEECH_OPEN_P90 / span, 1.0, MAX_GAIN if method != "phonemes" else MAX_PHONEME_GAIN))
    return with_opening(track, rest, np.clip((gaps - floor) * gain, 0.0, MAX_OPEN))


def phoneme_mouth_track(phonemes, n_frames: int, face: np.ndarray) -> np.ndarray:
    """Timed phonemes (from :func:`pipeline.talk.speech.synthesize`) -> (n_frames, 68, 2) via the viseme table."""
    return articulate(closed(face), visemes.phoneme_track(phonemes, n_frames))


# Rule-based baseline: the mouth opens with the speech level, smoothed like a jaw would move.
BASELINE_FLOOR_DB = -40.0  # level (re. the loudest frame) at which the mouth is closed
BASELINE_FULL_DB = -8.0  # ... and fully open
BASELINE_MAX_OPEN = 0.22  # IOD, about an open vowel after co-articulation
BASELINE_SMOOTHING = 0.5  # one-pole low-pass per frame (0: none)


def baseline_params_from_levels(levels: np.ndarray) -> np.ndarray:
    """(frames,) speech level in dB re. the loudest frame -> (frames, 5) parameters: opening only."""
    level = np.clip((levels - BASELINE_FLOOR_DB) / (BASELINE_FULL_DB - BASELINE_FLOOR_DB), 0, 1)
    opening = np.empty(len(level))
    state = 0.0
    for i, target in enumerate(level * BASELINE_MAX_OPEN):
        state = BASELINE_SMOOTHING * state + (1 - BASELINE_SMOOTHING) * target
        opening[i] = state
    params = np.zeros((len(level), len(PARAMS)))
    params[:, PARAMS.index("open")] = opening
    return params


def baseline_params(wave: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """(frames, 5) articulation parameters from the speech envelope alone."""
    return baseline_params_from_levels(envelope(wave, sr))


def baseline_mouth_track(wave: np.ndarray, face: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    return articulate(closed(face), baseline_params(wave, sr))
