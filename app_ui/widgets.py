"""Display helpers and widgets used only by the app: errors as messages, the raw-upload image input,
faces for the screen and score tables."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from pipeline import provenance
from pipeline.errors import UserError
from pipeline.faces.attributes import EMOTIONS, IDENTITY_SAME
from pipeline.faces.detection import Face
from pipeline.latent.directions import Direction

try:  # ZeroGPU Spaces lend a GPU per call; elsewhere this is a no-op.
    import spaces

    gpu = spaces.GPU
except ImportError:
    spaces = None

    def gpu(fn: Callable) -> Callable:
        return fn


# Seconds of ZeroGPU a call may hold the GPU (the Space's default, 60 s, for every other step):
# optimisation and PTI run hundreds of steps, a talking head renders every frame, a batch many photos.
GPU_SECONDS = {"optimise": 120, "talk": 180, "batch": 300, "augment": 120, "showcase": 90}


def gpu_for(step: str) -> Callable[[Callable], Callable]:
    """``spaces.GPU(duration=...)`` for a step listed in GPU_SECONDS, else the default; a no-op without ``spaces``."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=GPU_SECONDS[step]) if step in GPU_SECONDS else spaces.GPU


# Slider slots per group of the Edit tab; a model's directions fill each group's first slots.
SLIDER_GROUPS = {"Attributes": 8, "Emotions": 7, "Pose": 4, "Discovered": 8}
MAX_DIRECTIONS = sum(SLIDER_GROUPS.values())
POSE = ("yaw", "pitch", "roll")
AUTO_METHOD = "auto"  # the talk step picks the mouth motion that suits the input
HEAVY = "heavy"  # optimisation and video share one queue slot: each saturates the CPU
FACE_FILES = ["image", ".safetensors"]  # what "a photo or latent file" inputs accept


def direction_group(name: str, direction: Direction) -> str:
    if direction.kind != "attribute":
        return "Discovered"
    if name in EMOTIONS:
        return "Emotions"
    return "Pose" if name in POSE else "Attributes"


def slot_names(directions: Mapping[str, Direction]) -> list[str | None]:
    """The direction in each slider slot (None: the slot is hidden), group by group."""
    slots: list[str | None] = []
    for group, count in SLIDER_GROUPS.items():
        names = [n for n, d in directions.items() if direction_group(n, d) == group][:count]
        slots += names + [None] * (count - len(names))
    return slots


def keeps_note(direction: Direction | None) -> str | None:
    """What an edit leaves alone, for the slider's caption."""
    keeps = direction.info.get("keeps") if direction is not None and direction.info else None
    return "keeps: " + ", ".join(keeps) if keeps else None


def friendly(fn: Callable) -> Callable:
    """Show a UserError as a message in the app (gr.Error), not as a crash."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise gr.Error(str(exc)) from None

    @functools.wraps(fn)
    def stream(*args, **kwargs):
        try:
            yield from fn(*args, **kwargs)
        except UserError as exc:
            raise gr.Error(str(exc)) from None

    return stream if inspect.isgeneratorfunction(fn) else wrapper


def photo_input(**kwargs) -> gr.Image:
    """An image input that hands the raw upload to the studio, so that every file (including a
    non-image) gets the studio's own checks and messages instead of a decoder crash."""
    component = gr.Image(type="filepath", image_mode=None, **kwargs)
    decode = component.preprocess

    def raw(payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return decode(payload)

    # On the instance, not a subclass: a subclass makes Gradio write a stub file beside app.py.
    component.preprocess = raw
    return component


def face_image(label: str, **kwargs) -> gr.Image:
    """A face shown by the app (not an input)."""
    return gr.Image(label=label, interactive=False, format="png", height=256, **kwargs)


def upscale_for_display(image: np.ndarray, size: int = 256) -> np.ndarray:
    """Small faces enlarged (Lanczos) for the screen; downloads keep the model's own size."""
    if image.shape[0] >= size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size * image.shape[0] // image.shape[1]), Image.Resampling.LANCZOS))


def for_screen(image, model: str):
    """A face for the screen; the PNG the browser gets says it was AI-edited and by which model."""
    return None if image is None else provenance.tagged(upscale_for_display(image), model)


def face_label(index: int, face: Face) -> str:
    return f"face {index} ({face.size} px)"


def file_path(file: Path | None) -> str | None:
    return None if file is None else str(file)


def same_person_note(distance: float | None) -> str:
    return "no face found" if distance is None else f"{distance:.2f} ({'same person' if distance < IDENTITY_SAME else 'another person'})"


def scores_table(scores: dict) -> str:
    """The scores as a small table: the input face beside the result."""
    rows = ["age", "gender", "emotion", "smile"]
    before = scores.get("input", {})
    lines = ["| | input | result |", "|---|---|---|"]
    lines += [f"| {r} | {before.get(r, '')} | {scores.get(r, '')} |" for r in rows if r in scores]
    extra = []
    if "identity_distance" in scores:
        verdict = (f"the same person (below {IDENTITY_SAME})" if scores["same_person"]
                   else f"a different person ({IDENTITY_SAME} or more)")  # fmt: skip
        extra.append(f"identity distance **{scores['identity_distance']:.3f}**: {verdict}")
    if "lpips" in scores:
        extra.append(f"LPIPS {scores['lpips']:.3f}, PSNR {scores['psnr_db']:.1f} dB")
    return "\n".join(lines) + "\n\n" + " · ".join(extra)
