"""The app's event handlers, one per API endpoint: each calls one step of the studio and shapes
its result for the page. ``studio`` is the process's :class:`pipeline.studio.Studio`
(:func:`use_weights` swaps in one on a local model folder)."""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
import numpy as np

from pipeline.errors import UserError
from pipeline.faces.attributes import IDENTITY_SAME
from pipeline.studio import OVERRIDE_ENV, Model, Session, Studio, load_model
from pipeline.studio.session import OptimiseProgress

from .widgets import (
    AUTO_METHOD,
    face_label,
    file_path,
    for_screen,
    friendly,
    gpu,
    gpu_for,
    keeps_note,
    same_person_note,
    scores_table,
    slot_names,
)

studio = Studio()


def use_weights(folder: Path) -> None:
    """Make the local model folder ``folder`` the default model (``app.py --weights``)."""
    global studio
    os.environ[OVERRIDE_ENV] = str(folder.resolve())
    studio = Studio()


def new_session() -> Session:
    return studio.new_session()


def close_session(session: Session | None) -> None:
    if session is not None:
        session.close()


def show(session: Session, image):
    """A face for the screen, tagged with the session's model."""
    return for_screen(image, session.model or studio.model_name)


def seen(result) -> np.ndarray:
    """What the user sees of an edit: the face at the photo's resolution, else the model's face."""
    return result.image if result.face is None else result.face


def summary(model: Model | None) -> str:
    if model is None:
        return "No model could be loaded."
    return (f"**{model.name}**: {model.resolution} px faces, {model.n_latent} style layers, "
            f"alignment `{model.template}`, {'an' if model.encoder else 'no'} encoder, "
            f"{len(model.directions)} edit directions.")  # fmt: skip


def edit_note(model: Model | None) -> str:
    if model is None or not model.directions:
        return model.directions_note if model else ""
    return ("Move a slider: the face follows when you let go, its scores just after (**Edit** does the same). "
            "Strengths are in standard deviations of the model's faces along each direction.")


def model_view(model: Model) -> tuple:
    """The page's model-dependent parts: summary, edit note, conditioning, layer range, sliders."""
    names = list(model.directions)
    sliders = [gr.Slider(label=n, info=keeps_note(model.directions.get(n)) if n else None, value=0, visible=n is not None)
               for n in slot_names(model.directions)]  # fmt: skip
    last = model.n_latent - 1
    return (summary(model), edit_note(model), gr.CheckboxGroup(choices=names, value=[]),
            gr.Slider(maximum=last, value=0), gr.Slider(maximum=last, value=last), *sliders)  # fmt: skip


def initial_model(name: str) -> Model | None:
    try:
        return load_model(name)
    except UserError:
        return None  # the picker says why; the page still opens


@friendly
def pick_model(session: Session, name: str):
    return session, *model_view(studio.use_model(session, name))


@friendly
def upload(session: Session, photo: str | None):
    if photo is None:
        return session, None, gr.Radio(choices=[], value=None), None
    faces = studio.open_photo(session, photo)
    return align(session, 0, faces)


@friendly
def align(session: Session, index: int | None, faces=None):
    result = studio.align(session, int(index or 0))
    choices = [(face_label(i, f), i) for i, f in enumerate(result.faces)]
    return session, result.annotated, gr.Radio(choices=choices, value=result.index), show(session, result.aligned)


@friendly
def random_face(session: Session, seed: float | None):
    face = studio.random_face(session, None if seed in (None, "", -1) else int(seed))
    return session, show(session, face), file_path(studio.save_latent(session))


@friendly
def start_from_file(session: Session, source: str | None):
    """Continue from a photo (its largest face, encoded) or a latent file."""
    if source is None:
        raise UserError("choose a photo or a latent file (.safetensors)")
    if str(source).endswith(".safetensors"):
        face = studio.use_latent_file(session, source)
    else:
        studio.open_photo(session, source)
        studio.align(session, 0)
        face = studio.encode(session).reconstruction
    return session, show(session, face), file_path(studio.save_latent(session))


@friendly
@gpu
def encode(session: Session):
    result = studio.encode(session)
    return (session, show(session, session.target), show(session, result.reconstruction), result.scores, scores_table(result.scores),
            file_path(studio.save_latent(session)))  # fmt: skip


@friendly
@gpu_for("optimise")
def optimise(session: Session, steps: float, space: str, noise: bool, pti: bool, progress=gr.Progress()):  # noqa: B008
    status = ""
    for event in studio.optimise_stream(session, int(steps), space, noise, pti, preview_every=5):
        if isinstance(event, OptimiseProgress):
            progress(event.step / max(1, event.steps), desc=f"step {event.step} of {event.steps}")
            status = f"step {event.step} of {event.steps}: loss {event.loss:.4f}"
            yield session, show(session, event.preview), status, None
        else:
            pti_note = f" + {event.pti_steps} tuning steps" if event.pti_steps else ""
            status = f"{event.stopped}: {event.steps} steps{pti_note} in {event.seconds:.1f} s, loss {event.history[-1]['loss']:.4f}"
            yield session, show(session, session.reconstruction), status, file_path(studio.save_latent(session))


def stop(session: Session):
    studio.stop(session)


@friendly
@gpu
def edit(session: Session, conditioning: list[str], keep: bool, own_layers: bool, first: float, last: float,
         paste: bool, *strengths, scores: bool = True):  # fmt: skip
    values = {n: v for n, v in zip(slot_names(studio.directions(session)), strengths) if n}
    layers = None if own_layers else (int(first), int(last) + 1)
    result = studio.edit(session, values, conditioning or [], layers, paste, keep=bool(keep), scores=scores)
    image_file = file_path(studio.save_image(session, seen(result), "edited"))
    composite_file = file_path(studio.save_image(session, result.composite, "composite")) if result.composite is not None else None
    pasted = result.composite is not None
    before = studio.photo_face(session)
    return (session, show(session, session.reconstruction if before is None else before),
            show(session, seen(result)), result.scores, scores_table(result.scores),
            image_file, gr.Image(result.composite, visible=pasted), gr.File(composite_file, visible=pasted),
            show(session, session.reconstruction), show(session, result.image))  # fmt: skip


@friendly
def edit_live(session: Session, conditioning: list[str], keep: bool, own_layers: bool, first: float, last: float,
              paste: bool, *strengths):  # fmt: skip
    """A slider let go: the face first; its scores follow (``edit_scores``)."""
    return edit(session, conditioning, keep, own_layers, first, last, paste, *strengths, scores=False)


@friendly
def edit_scores(session: Session):
    scores = studio.edit_scores(session)
    return scores, scores_table(scores)


@friendly
@gpu_for("talk")
def talk(session: Session, text: str, voice: str, wpm: float, audio: str | None, method: str = AUTO_METHOD,
         paste: bool = True, head_motion: bool = True, keep_expression: bool = False):  # fmt: skip
    video = studio.talk(session, text, voice, int(wpm), audio, paste=paste, method=None if method == AUTO_METHOD else method,
                        head_motion=head_motion, keep_expression=keep_expression)  # fmt: skip
    return str(video), str(video)


@friendly
@gpu
def mix(session: Session, other: str | None, seed: float, amount: float, groups: list[str]):
    latent = studio.other_face(session, other, None if other else int(seed))
    image = studio.mix(session, latent, amount, groups or [])
    distances = studio.mix_identity(session, latent, image)
    in_photo = studio.mix_in_photo(session, image)
    image = image if in_photo is None else in_photo.face  # at the photo's resolution when there is one

    note = (f"Identity distance to A: {same_person_note(distances['to_a'])} · to B: {same_person_note(distances['to_b'])} "
            f"(dlib; same person below {IDENTITY_SAME})")  # fmt: skip
    return show(session, image), file_path(studio.save_image(session, image, "mix")), note


def composite_view(session: Session, composite):
    """The pasted-back photo, shown only when there is one."""
    return gr.Image(show(session, composite), visible=composite is not None)


@friendly
@gpu
def edit_to_target(session: Session, name: str | None, value: float, tolerance: float, paste: bool):
    if not name:
        raise UserError("choose the attribute to aim at")
    target, result = studio.edit_to_target(session, name, value, tolerance or None, paste=paste)
    verdict = "Reached" if target.reached else "Not reached"
    steps = " → ".join(f"{h['strength']:+.2f}: {h['value']:.3g}" for h in target.history)
    note = f"**{verdict}.** {target.message}\n\nSteps (standard deviations: reading): {steps}"
    return (show(session, seen(result)), note, composite_view(session, result.composite),
            file_path(studio.save_image(session, seen(result), f"{name}-{value:g}")))  # fmt: skip


@friendly
@gpu
def localized_edit(session: Session, name: str | None, strength: float, region: str, paste: bool):
    if not name:
        raise UserError("choose the direction to edit")
    result = studio.localized_edit(session, {name: float(strength)}, region, paste=paste)
    return (show(session, seen(result)), scores_table(result.scores), composite_view(session, result.composite),
            file_path(studio.save_image(session, seen(result), f"{name}-{region}")))  # fmt: skip


@friendly
@gpu
def transfer(session: Session, other: str | None, seed: float, mode: str, strength: float):
    latent = studio.other_face(session, other, None if other else int(seed))
    result = studio.transfer(session, latent, mode, strength)
    source = result.scores.pop("expression_source")
    note = f"Expression from B: {source['emotion']}, smile {source['smile']}.\n\n" + scores_table(result.scores)
    return show(session, seen(result)), note, file_path(studio.save_image(session, seen(result), "expression"))


@friendly
@gpu_for("augment")
def augment(session: Session, n: float, seed: float):
    archive, agreement = studio.augment(session, int(n), int(seed))
    return str(archive), agreement


@friendly
@gpu_for("showcase")
def showcase(session: Session, sweep: list[str], low: float, high: float, frames: float, sheet: list[str]):
    files = studio.showcase(session, sweep or ["age"], (float(low), float(high)), int(frames), sheet or [])
    gif, sheet_png = str(files.extra["gif"]), str(files.extra["sheet"])
    return gif, str(files.video), str(files.image), sheet_png, [gif, str(files.video), str(files.image), sheet_png]


@friendly
@gpu_for("batch")
def batch(session: Session, photos: list[str] | None, name: str | None, strength: float, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
    if not name:
        raise UserError("choose the direction to edit")
    archive, rows = studio.batch(session, photos or [], {name: float(strength)})
    table = [[r.file, r.status, r.reason, r.seconds] for r in rows]
    return str(archive), table


def create_choices(session: Session):
    """The Create tab's direction pickers, for the session's model."""
    names, targets = list(studio.directions(session)), studio.target_names(session)
    pick = lambda options: gr.Dropdown(choices=options, value=options[0] if options else None)  # noqa: E731
    return (pick(targets), pick(names), gr.CheckboxGroup(choices=names, value=names[:1]),
            gr.CheckboxGroup(choices=names, value=names[:4]), pick(names))  # fmt: skip


def current_face(session: Session):
    return show(session, session.reconstruction)


def talk_face(session: Session):
    """What the video will move: the photo's face at its resolution, else the model's face."""
    face = studio.photo_face(session)
    return show(session, session.reconstruction if face is None else face)
