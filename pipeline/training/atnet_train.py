"""Training and measuring AT-net on synthetic speech with viseme targets.

Each step draws utterances (clean or augmented audio), a random face shape from
training photos and a crop of up to 4 s; the target is that face articulated by the
utterance's viseme track, as changes of PCA coefficients from the still face. The loss
is the squared landmark error plus a term on frame-to-frame motion, so the mouth
moves at the speed the target moves, without jitter.

:func:`evaluate` compares AT-net with the rule-based baseline on held-out synthetic
speech (where the viseme track is the ground truth) and on natural recordings (where
there is none: the mouth should follow the speech level and close in pauses).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..talk.atnet import ATNet, ATNetConfig, TalkModel, baseline_mouth_track, baseline_params_from_levels
from ..talk.audio import envelope, frame_windows, load_audio
from ..talk.mouth import MOUTH, articulate, closed, inner_gap
from .atnet_data import Split, face_shapes, fit_shape_model, load_or_make

HELDOUT_FACES = 200  # face shapes kept out of training, used for evaluation


@dataclass(frozen=True)
class TrainConfig:
    batch: int = 16
    crop_frames: int = 100  # 4 s
    lr: float = 2e-3
    lr_final: float = 2e-4
    velocity_weight: float = 2.0
    clean_share: float = 0.3  # of utterances drawn with clean (unaugmented) audio
    seed: int = 0


class Batcher:
    """Random training batches: MFCC windows, face coefficients, target coefficient changes."""

    def __init__(self, split: Split, rests: np.ndarray, model: TalkModel, config: TrainConfig):
        self.split, self.rests, self.model, self.config = split, rests, model, config
        self.rest_coeffs = model.shape.encode(rests)
        self.rng = np.random.default_rng(config.seed)

    def sample(self) -> tuple[torch.Tensor, ...]:
        cfg, split, rng = self.config, self.split, self.rng
        windows, idents, targets, masks = [], [], [], []
        for _ in range(cfg.batch):
            i = int(rng.integers(len(split)))
            copy = 0 if rng.random() < cfg.clean_share else int(rng.integers(1, len(split.mfcc)))
            n = int(split.frame_offsets[i + 1] - split.frame_offsets[i])
            # Half the crops start at the beginning, as inference does; the rest anywhere.
            start = 0 if rng.random() < 0.5 or n <= cfg.crop_frames else int(rng.integers(n - cfg.crop_frames + 1))
            length = min(cfg.crop_frames, n - start)
            win = frame_windows(split.utterance_mfcc(i, copy), n)[start : start + length]
            face = int(rng.integers(len(self.rests)))
            params = split.utterance_params(i)[start : start + length]
            coeffs = self.model.shape.encode(articulate(self.rests[face], params))
            pad = cfg.crop_frames - length
            windows.append(np.pad(win, ((0, pad), (0, 0), (0, 0))))
            targets.append(np.pad(coeffs - self.rest_coeffs[face], ((0, pad), (0, 0))))
            masks.append(np.pad(np.ones(length), (0, pad)))
            idents.append(self.rest_coeffs[face])
        as_tensor = lambda a: torch.from_numpy(np.stack(a).astype(np.float32))  # noqa: E731
        return as_tensor(windows), as_tensor(idents), as_tensor(targets), as_tensor(masks)


def loss_fn(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, velocity_weight: float) -> torch.Tensor:
    """Squared landmark error (the PCA basis is orthonormal) + error of the frame-to-frame motion."""
    per_frame = ((pred - target) ** 2).sum(-1)
    loss = (per_frame * mask).sum() / mask.sum()
    motion_mask = mask[:, 1:] * mask[:, :-1]
    motion = (((pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])) ** 2).sum(-1)
    return loss + velocity_weight * (motion * motion_mask).sum() / motion_mask.sum()


def data_statistics(split: Split, rests: np.ndarray, model: TalkModel) -> dict[str, np.ndarray]:
    """Means and deviations for the network's input and output standardisation."""
    feats = np.concatenate([m.astype(np.float32) for m in split.mfcc])
    rest_coeffs = model.shape.encode(rests)
    rng = np.random.default_rng(1)
    sample = rng.choice(len(split.params), size=min(20_000, len(split.params)), replace=False)
    faces = rng.integers(len(rests), size=len(sample))
    moved = np.stack([articulate(rests[f], split.params[s]) for f, s in zip(faces, sample)])
    deltas = model.shape.encode(moved) - rest_coeffs[faces]
    return {
        "feature_mean": feats.mean(0), "feature_std": feats.std(0) + 1e-3,
        "shape_std": model.shape.std, "delta_std": deltas.std(0) + 1e-4,
    }  # fmt: skip


class Trainer:
    def __init__(self, run_dir: Path, faces_dir: Path, config: TrainConfig, log=print, n_train: int | None = None):
        self.run_dir, self.config, self.log = run_dir, config, log
        data_dir = run_dir / "data"
        shapes = face_shapes(faces_dir, 2500, data_dir / "faces_2500.npy", log)
        rests = np.stack([closed(s) for s in shapes])
        self.train_rests, self.eval_rests = rests[:-HELDOUT_FACES], rests[-HELDOUT_FACES:]
        self.train = load_or_make(data_dir, "train", n_train, log)
        self.val = load_or_make(data_dir, "val", None, log)
        torch.manual_seed(config.seed)
        shape = fit_shape_model(shapes[:-HELDOUT_FACES])
        mean_face = closed(np.median(shapes[:-HELDOUT_FACES], axis=0))
        net = ATNet(ATNetConfig(shape_dims=shape.size))
        self.model = TalkModel(net=net, shape=shape, mean_face=mean_face, info={})
        for name, value in data_statistics(self.train, self.train_rests, self.model).items():
            getattr(net, name).copy_(torch.from_numpy(np.asarray(value, dtype=np.float32)))
        self.opt = torch.optim.Adam(net.parameters(), lr=config.lr)
        self.batcher = Batcher(self.train, self.train_rests, self.model, config)
        self.step = 0
        self.seconds = 0.0  # training time so far, over all sessions
        self.budget = (0.0, 0.0)  # (start, end) seconds of the current learning-rate schedule
        self.history: list[dict] = []

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.pt"

    def save(self) -> None:
        state = {
            "net": self.model.net.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
            "seconds": self.seconds, "budget": list(self.budget), "history": json.dumps(self.history),
            # As tensors, so that the state loads with weights_only (no pickled objects).
            "shape": {k: torch.from_numpy(np.asarray(getattr(self.model.shape, k))) for k in ("mean", "basis", "std")},
        }  # fmt: skip
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.state_path)

    def load(self) -> bool:
        if not self.state_path.exists():
            return False
        state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        self.model.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.model.shape.mean, self.model.shape.basis, self.model.shape.std = (
            state["shape"][k].numpy() for k in ("mean", "basis", "std")
        )
        self.batcher.rest_coeffs = self.model.shape.encode(self.train_rests)
        self.step, self.seconds, self.history = state["step"], state["seconds"], json.loads(state["history"])
        self.budget = tuple(state["budget"])
        return True

    def lr_at(self, seconds: float) -> float:
        """Cosine decay from lr to lr_final over the current time budget."""
        c, (start, end) = self.config, self.budget
        fraction = min(max((seconds - start) / max(end - start, 1.0), 0.0), 1.0)
        return c.lr_final + 0.5 * (c.lr - c.lr_final) * (1 + np.cos(np.pi * fraction))

    def validate(self) -> dict[str, float]:
        return evaluate_synthetic(self.model, self.val, self.eval_rests, copies=(0, 1), methods=("atnet",),
                                  indices=range(min(60, len(self.val))))["atnet"]  # fmt: skip

    def run(self, minutes: float, every: int = 100) -> None:
        """Train for ``minutes``; an interrupted run resumes its own schedule, a finished one gets a new one."""
        if self.seconds >= self.budget[1] - 1:
            self.budget = (self.seconds, self.seconds + minutes * 60)
        net = self.model.net.train()
        start_wall, start_seconds = time.time(), self.seconds
        while True:
            self.seconds = start_seconds + time.time() - start_wall
            if self.seconds >= self.budget[1]:
                break
            for group in self.opt.param_groups:
                group["lr"] = self.lr_at(self.seconds)
            windows, ident, target, mask = self.batcher.sample()
            loss = loss_fn(net(windows, ident), target, mask, self.config.velocity_weight)
            self.opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            self.opt.step()
            self.step += 1
            if self.step % every == 0:
                val = self.validate()
                net.train()
                row = {"step": self.step, "minutes": round(self.seconds / 60, 2), "loss": round(loss.item(), 6)} | val
                self.history.append(row)
                self.log(
                    f"step {self.step} | {self.seconds / 60:.1f} min | loss {loss.item():.5f} | "
                    f"val mouth error {val['mouth_error']:.4f} IOD | opening corr {val['opening_corr']:.3f}"
                )
                self.save()
        self.save()


def export(trainer: Trainer, out_dir: Path) -> Path:
    model = trainer.model
    model.info = {
        "steps": trainer.step, "train_minutes": round(trainer.seconds / 60, 1),
        "train_utterances": len(trainer.train), "config": asdict(trainer.config),
        "last_validation": trainer.history[-1] if trainer.history else None,
    }  # fmt: skip
    path = out_dir / "atnet.safetensors"
    model.save(path)
    return path


# ---- evaluation -------------------------------------------------------------------------

CLOSED_BELOW = 0.03  # IOD: an inner lip gap this small reads as closed lips


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _predict(model: TalkModel, method: str, split: Split, i: int, copy: int, rest: np.ndarray) -> np.ndarray:
    n = int(split.frame_offsets[i + 1] - split.frame_offsets[i])
    if method == "atnet":
        coeffs = model.predict_coefficients(frame_windows(split.utterance_mfcc(i, copy), n), rest)
        return model.shape.decode(coeffs, rest)
    return articulate(rest, baseline_params_from_levels(split.utterance_levels(i, copy)))


def evaluate_synthetic(
    model: TalkModel, split: Split, rests: np.ndarray, copies=(0, 1), methods=("atnet", "baseline"), indices=None
) -> dict[str, dict[str, float]]:
    """Landmark error and mouth-opening agreement against the viseme targets (all utterances or ``indices``)."""
    out = {}
    indices = range(len(split)) if indices is None else indices
    for method in methods:
        errors, jaw_errors, corrs, open_err, closures, pauses = [], [], [], [], [], []
        for copy in copies:
            for i in indices:
                rest = rests[i % len(rests)]
                target = articulate(rest, split.utterance_params(i))
                pred = _predict(model, method, split, i, copy, rest)
                errors.append(np.linalg.norm(pred[:, MOUTH] - target[:, MOUTH], axis=-1).mean())
                jaw_errors.append(np.linalg.norm(pred[:, :17] - target[:, :17], axis=-1).mean())
                g_pred, g_target = inner_gap(pred), inner_gap(target)
                corrs.append(_corr(g_pred, g_target))
                open_err.append(np.abs(g_pred - g_target).mean())
                params = split.utterance_params(i)
                closures.extend(g_pred[params[:, 4] > 0.99] < CLOSED_BELOW)
                level = split.utterance_levels(i, 0)
                pauses.extend(g_pred[level < -35])
        out[method] = {
            "mouth_error": round(float(np.mean(errors)), 4),
            "jaw_error": round(float(np.mean(jaw_errors)), 4),
            "opening_corr": round(float(np.mean(corrs)), 3),
            "opening_error": round(float(np.mean(open_err)), 4),
            "lip_closure_recall": round(float(np.mean(closures)), 3) if closures else None,
            "pause_opening": round(float(np.mean(pauses)), 4) if pauses else None,
        }
    return out


def evaluate_natural(model: TalkModel, paths: list[Path]) -> dict[str, dict[str, float]]:
    """On recordings without ground truth: does the mouth follow the speech level and close in pauses?"""
    out: dict[str, dict[str, float]] = {}
    for method in ("atnet", "baseline"):
        rows = []
        for path in paths:
            wave = load_audio(path)
            level = envelope(wave)
            track = model.mouth_track(wave) if method == "atnet" else baseline_mouth_track(wave, model.mean_face)
            gap = inner_gap(track)
            pause, loud = level < -35, level > -15
            rows.append({
                "envelope_corr": _corr(gap, np.clip(level, -40, 0)),
                "pause_opening": float(gap[pause].mean()) if pause.any() else float("nan"),
                "pause_closed_share": float((gap[pause] < CLOSED_BELOW).mean()) if pause.any() else float("nan"),
                "speech_opening": float(gap[loud].mean()) if loud.any() else float("nan"),
            })  # fmt: skip
        out[method] = {k: round(float(np.nanmean([r[k] for r in rows])), 3) for k in rows[0]}
    return out
