"""Face studio: the Gradio app. Layout and wiring only; the work is done by ``pipeline.studio``.

Run ``python app.py`` (``--weights DIR`` to use a local model folder, ``--port N``).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from pipeline import limits, provenance, speech
from pipeline.attributes import SCORE_NAMES
from pipeline.directions import layer_groups
from pipeline.errors import UserError
from pipeline.regions import REGIONS
from pipeline.studio import (
    DEFAULTS,
    IDENTITY_SAME,
    OVERRIDE_ENV,
    Model,
    OptimiseProgress,
    Session,
    Studio,
    face_label,
    load_model,
    model_choices,
    upscale_for_display,
)
from pipeline.talk import METHODS as TALK_METHODS

try:  # ZeroGPU Spaces lend a GPU per call; elsewhere this is a no-op.
    import spaces

    gpu = spaces.GPU
except ImportError:

    def gpu(fn: Callable) -> Callable:
        return fn


ASSETS = Path(__file__).parent / "assets"
EXAMPLES = Path(tempfile.gettempdir()) / "studio-examples"
MAX_DIRECTIONS = 8  # slider slots; a model's directions fill the first ones
AUTO_METHOD = "auto"  # the talk step picks the mouth motion that suits the input
HEAVY = "heavy"  # optimisation and video share one queue slot: each saturates the CPU
NOTE = (
    "**Use responsibly.** Edit only photos of people who agreed to it, and never use the results to "
    "impersonate anyone or to deceive. Every image and video the studio makes is tagged as AI-edited. "
    "The face model was trained on UTKFace, for non-commercial research."
)

studio = Studio()


def new_session() -> Session:
    return studio.new_session()


def close_session(session: Session | None) -> None:
    if session is not None:
        session.close()


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


def show(session: Session, image):
    """A face for the screen; the PNG the browser gets says it was AI-edited and by which model."""
    return None if image is None else provenance.tagged(upscale_for_display(image), session.model or studio.model_name)


def scores_table(scores: dict) -> str:
    """The scores as a small table: the input face beside the result."""
    rows = ["age", "gender", "emotion", "smile"]
    before = scores.get("input", {})
    lines = ["| | input | result |", "|---|---|---|"]
    lines += [f"| {r} | {before.get(r, '')} | {scores.get(r, '')} |" for r in rows if r in scores]
    extra = []
    if "identity_distance" in scores:
        verdict = "the same person (below 0.6)" if scores["same_person"] else "a different person (0.6 or more)"
        extra.append(f"identity distance **{scores['identity_distance']:.3f}**: {verdict}")
    if "lpips" in scores:
        extra.append(f"LPIPS {scores['lpips']:.3f}, PSNR {scores['psnr_db']:.1f} dB")
    return "\n".join(lines) + "\n\n" + " · ".join(extra)


def path(file: Path | None) -> str | None:
    return None if file is None else str(file)


# --------------------------------------------------------------------------- handlers


def summary(model: Model | None) -> str:
    if model is None:
        return "No model could be loaded."
    return (f"**{model.name}**: {model.resolution} px faces, {model.n_latent} style layers, "
            f"alignment `{model.template}`, {'an' if model.encoder else 'no'} encoder, "
            f"{len(model.directions)} edit directions.")  # fmt: skip


def edit_note(model: Model | None) -> str:
    if model is None or not model.directions:
        return model.directions_note if model else ""
    return "Move a slider, then **Edit**. Strengths are in standard deviations of the model's faces along each direction."


def model_view(model: Model) -> tuple:
    """The page's model-dependent parts: summary, edit note, conditioning, layer range, sliders."""
    names = list(model.directions)
    sliders = [gr.Slider(label=n, value=0, visible=True) for n in names[:MAX_DIRECTIONS]]
    sliders += [gr.Slider(visible=False, value=0)] * (MAX_DIRECTIONS - len(sliders))
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
    return session, show(session, face), path(studio.save_latent(session))


@friendly
def start_from_file(session: Session, path: str | None):
    """Continue from a photo (its largest face, encoded) or a latent file."""
    if path is None:
        raise UserError("choose a photo or a latent file (.safetensors)")
    if path.endswith(".safetensors"):
        face = studio.use_latent_file(session, path)
    else:
        studio.open_photo(session, path)
        studio.align(session, 0)
        face = studio.encode(session).reconstruction
    return session, show(session, face), path(studio.save_latent(session))


@friendly
@gpu
def encode(session: Session):
    result = studio.encode(session)
    return (session, show(session, session.target), show(session, result.reconstruction), result.scores, scores_table(result.scores),
            path(studio.save_latent(session)))  # fmt: skip


@friendly
@gpu
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
            yield session, show(session, session.reconstruction), status, path(studio.save_latent(session))


def stop(session: Session):
    studio.stop(session)


@friendly
@gpu
def edit(session: Session, conditioning: list[str], own_layers: bool, first: float, last: float, paste: bool, *strengths):
    names = list(studio.directions(session))
    values = dict(zip(names, strengths))
    layers = None if own_layers else (int(first), int(last) + 1)
    result = studio.edit(session, values, conditioning or [], layers, paste)
    image_file = path(studio.save_image(session, result.image, "edited"))
    composite_file = path(studio.save_image(session, result.composite, "composite")) if result.composite is not None else None
    pasted = result.composite is not None
    return (session, show(session, session.reconstruction), show(session, result.image), result.scores, scores_table(result.scores),
            image_file, gr.Image(result.composite, visible=pasted), gr.File(composite_file, visible=pasted))  # fmt: skip


@friendly
@gpu
def talk(session: Session, text: str, voice: str, wpm: float, audio: str | None, method: str = AUTO_METHOD,
         paste: bool = False):  # fmt: skip
    video = studio.talk(session, text, voice, int(wpm), audio, paste=paste, method=None if method == AUTO_METHOD else method)
    return str(video), str(video)


@friendly
@gpu
def mix(session: Session, other: str | None, seed: float, amount: float, groups: list[str]):
    latent = studio.other_face(session, other, None if other else int(seed))
    image = studio.mix(session, latent, amount, groups or [])
    distances = studio.mix_identity(session, latent, image)

    def verdict(d: float | None) -> str:
        return "no face found" if d is None else f"{d:.2f} ({'same person' if d < IDENTITY_SAME else 'another person'})"

    note = f"Identity distance to A: {verdict(distances['to_a'])} · to B: {verdict(distances['to_b'])} (dlib; same person below {IDENTITY_SAME})"
    return show(session, image), path(studio.save_image(session, image, "mix")), note


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
    return (show(session, result.image), note, composite_view(session, result.composite),
            path(studio.save_image(session, result.image, f"{name}-{value:g}")))  # fmt: skip


@friendly
@gpu
def localized_edit(session: Session, name: str | None, strength: float, region: str, paste: bool):
    if not name:
        raise UserError("choose the direction to edit")
    result = studio.localized_edit(session, {name: float(strength)}, region, paste=paste)
    return (show(session, result.image), scores_table(result.scores), composite_view(session, result.composite),
            path(studio.save_image(session, result.image, f"{name}-{region}")))  # fmt: skip


@friendly
@gpu
def transfer(session: Session, other: str | None, seed: float, mode: str, strength: float):
    latent = studio.other_face(session, other, None if other else int(seed))
    result = studio.transfer(session, latent, mode, strength)
    source = result.scores.pop("expression_source")
    note = f"Expression from B: {source['emotion']}, smile {source['smile']}.\n\n" + scores_table(result.scores)
    return show(session, result.image), note, path(studio.save_image(session, result.image, "expression"))


@friendly
@gpu
def augment(session: Session, n: float, seed: float):
    archive, agreement = studio.augment(session, int(n), int(seed))
    return str(archive), agreement


@friendly
@gpu
def showcase(session: Session, sweep: list[str], low: float, high: float, frames: float, sheet: list[str]):
    files = studio.showcase(session, sweep or ["age"], (float(low), float(high)), int(frames), sheet or [])
    gif, sheet_png = str(files.extra["gif"]), str(files.extra["sheet"])
    return gif, str(files.video), str(files.image), sheet_png, [gif, str(files.video), str(files.image), sheet_png]


@friendly
@gpu
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


# --------------------------------------------------------------------------- layout


def example_faces() -> list[list[str]]:
    examples = [[str(ASSETS / "astronaut.png")], [str(ASSETS / "mona_lisa.jpg")]]
    try:  # one of the model's own faces, made once per model and kept with the app's examples
        generated = studio.example_face(EXAMPLES)
    except UserError:
        generated = None
    return examples + ([[str(generated)]] if generated else [])


def start_row(state: gr.State, face: gr.Image, latent_file: gr.File, tab: str) -> None:
    """Every step can start from the previous step, a fresh upload or a random face."""
    with gr.Accordion("Start from something else", open=False):
        with gr.Row():
            source = gr.File(label="photo or latent file (.safetensors)", file_types=["image", ".safetensors"])
            with gr.Column():
                use = gr.Button("Use this file")
                seed = gr.Number(label="seed (-1: any)", value=-1, precision=0)
                rand = gr.Button("Random face")
    use.click(start_from_file, [state, source], [state, face, latent_file], api_name=f"start_from_file_{tab}")
    rand.click(random_face, [state, seed], [state, face, latent_file], api_name=f"random_face_{tab}")


def build() -> gr.Blocks:
    choices = model_choices()
    default = next((c.name for c in choices if c.loadable), choices[0].name)
    loaded = initial_model(default)
    names = list(loaded.directions)[:MAX_DIRECTIONS] if loaded else []
    last_layer = loaded.n_latent - 1 if loaded else 9
    names_all = list(loaded.directions) if loaded else []
    target_names = [n for n in names_all if n in SCORE_NAMES]
    with gr.Blocks(title="Face studio", delete_cache=(1800, 3600)) as demo:
        # Deleted (with its files) when the tab closes, or after the idle time: API clients never close.
        state = gr.State(new_session, delete_callback=close_session, time_to_live=limits.session_seconds())
        gr.Markdown("# Face studio\nAlign a face, find its latent code, edit it, make it talk, mix it with another.")
        with gr.Row():
            model = gr.Dropdown([(c.label, c.name) for c in choices], value=default, label="Model", scale=2)
            about = gr.Markdown(summary(loaded))
        with gr.Tabs():
            with gr.Tab("1 Upload & align"):
                with gr.Row():
                    photo = photo_input(label="Photo", sources=["upload", "webcam"])
                    annotated = gr.Image(label="Faces found", interactive=False, format="png")
                    with gr.Column():
                        picker = gr.Radio(label="Face to edit (largest first)", choices=[])
                        aligned = gr.Image(label="Aligned face", interactive=False, format="png", height=256, elem_id="aligned")
                        align_btn = gr.Button("Align", variant="primary")
                gr.Examples(example_faces(), inputs=[photo], label="Examples")
                with gr.Row(equal_height=True):
                    seed1 = gr.Number(label="seed (-1: any)", value=-1, precision=0, scale=1, min_width=120)
                    rand1 = gr.Button("Or start from a random face", scale=3)
                    latent1 = gr.File(label="latent", visible=False)
            with gr.Tab("2 Encode"):
                with gr.Row():
                    enc_in = gr.Image(label="Input (aligned)", interactive=False, format="png", height=256)
                    enc_out = gr.Image(label="Reconstruction", interactive=False, format="png", height=256, elem_id="reconstruction")
                    with gr.Column():
                        enc_table = gr.Markdown(elem_id="encode-scores")
                        with gr.Accordion("All scores", open=False):
                            enc_scores = gr.JSON(label="Scores")
                encode_btn = gr.Button("Encode", variant="primary")
                enc_file = gr.File(label="Latent file")
                start_row(state, enc_out, enc_file, "encode")
            with gr.Tab("3 Optimise") as opt_tab:
                with gr.Row():
                    with gr.Column():
                        steps = gr.Slider(10, limits.max_steps(), value=DEFAULTS.steps, step=10, label="Steps")
                        space = gr.Radio([("W+ (closer)", "wplus"), ("W (more editable)", "w")], value="wplus", label="Latent space")
                        noise = gr.Checkbox(label="Optimise noise maps")
                        pti = gr.Checkbox(label="Pivotal tuning (fine detail; slower)")
                        with gr.Row():
                            opt_btn = gr.Button("Optimise", variant="primary")
                            stop_btn = gr.Button("Stop", variant="stop")
                    with gr.Column():
                        opt_preview = gr.Image(label="Reconstruction", interactive=False, format="png", height=256)
                        opt_status = gr.Markdown()
                        opt_file = gr.File(label="Latent file")
                start_row(state, opt_preview, opt_file, "optimise")
            with gr.Tab("4 Edit") as edit_tab:
                edit_note_md = gr.Markdown(edit_note(loaded))
                with gr.Row():
                    with gr.Column():
                        sliders = [
                            gr.Slider(-4, 4, value=0, step=0.1, label=names[i] if i < len(names) else None,
                                      visible=i < len(names))  # fmt: skip
                            for i in range(MAX_DIRECTIONS)
                        ]
                        conditioning = gr.CheckboxGroup(label="Keep unchanged (conditional editing)", choices=names)
                        with gr.Accordion("Advanced", open=False):
                            own_layers = gr.Checkbox(value=True, label="Each direction on its own layers")
                            first = gr.Slider(0, last_layer, value=0, step=1, label="first layer")
                            last = gr.Slider(0, last_layer, value=last_layer, step=1, label="last layer")
                        paste = gr.Checkbox(label="Paste back into the original photo")
                        edit_btn = gr.Button("Edit", variant="primary")
                    before = gr.Image(label="Before", interactive=False, format="png", height=256)
                    after = gr.Image(label="After", interactive=False, format="png", height=256, elem_id="after")
                    with gr.Column():
                        edit_table = gr.Markdown(elem_id="edit-scores")
                        with gr.Accordion("All scores", open=False):
                            edit_scores = gr.JSON(label="Scores")
                with gr.Row():
                    composite = gr.Image(label="Composite photo", interactive=False, format="png", visible=False)
                    with gr.Column():
                        edited_file = gr.File(label="Edited face")
                        composite_file = gr.File(label="Composite photo", visible=False)
                edit_latent = gr.File(label="latent", visible=False)
                start_row(state, before, edit_latent, "edit")
            with gr.Tab("5 Talk") as talk_tab:
                gr.Markdown(studio.talk_status() or "Type a sentence (or upload a recording) and make a video of the face saying it.")
                with gr.Row():
                    with gr.Column():
                        text = gr.Textbox(label="Text to say", max_lines=4, placeholder="Hello! Nice to meet you.")
                        voice = gr.Dropdown(list(speech.VOICES), value=speech.DEFAULT_VOICE, label="Voice")
                        wpm = gr.Slider(*speech.WPM_RANGE, value=160, step=10, label="Speed (words per minute)")
                        audio = gr.Audio(label="...or lip-sync this recording", type="filepath")
                        with gr.Row():
                            talk_method = gr.Dropdown([AUTO_METHOD, *TALK_METHODS], value=AUTO_METHOD, label="Mouth motion",
                                                      info="auto: phoneme timings for text, the AT-net for a recording")  # fmt: skip
                            talk_paste = gr.Checkbox(label="Paste back into the photo", value=False)
                        talk_btn = gr.Button("Make video", variant="primary")
                    talk_face = gr.Image(label="Face", interactive=False, format="png", height=256)
                    video = gr.Video(label="Video")
                video_file = gr.File(label="Video file")
                talk_latent = gr.File(label="latent", visible=False)
                start_row(state, talk_face, talk_latent, "talk")
            with gr.Tab("6 Mix") as mix_tab:
                with gr.Row():
                    face_a = gr.Image(label="Face A (current)", interactive=False, format="png", height=256)
                    with gr.Column():
                        other = gr.File(label="Face B: a photo or latent file (empty: a random face)",
                                        file_types=["image", ".safetensors"])  # fmt: skip
                        seed_b = gr.Number(label="random face B seed", value=1, precision=0)
                    mixed = gr.Image(label="Mix", interactive=False, format="png", height=256)
                amount = gr.Slider(0, 1, value=0.5, step=0.05, label="Interpolation (0: A, 1: B)")
                groups = gr.CheckboxGroup(list(layer_groups(10)), label="Take these layers from B (coarse: pose and shape; "
                                          "middle: features; fine: colour)")  # fmt: skip
                mix_btn = gr.Button("Mix", variant="primary")
                mix_note = gr.Markdown()
                mix_file = gr.File(label="Mixed face")
                mix_latent = gr.File(label="latent", visible=False)
                start_row(state, face_a, mix_latent, "mix")
            with gr.Tab("7 Create") as create_tab:
                gr.Markdown("Aim an edit at a value, keep it to one region, give the face another's expression, "
                            "make a labelled set of variants, or export a demo.")  # fmt: skip
                with gr.Row():
                    create_face = gr.Image(label="Face (current)", interactive=False, format="png", height=256)
                    create_out = gr.Image(label="Result", interactive=False, format="png", height=256)
                    with gr.Column():
                        create_note = gr.Markdown(elem_id="create-note")
                        create_file = gr.File(label="Result face")
                create_composite = gr.Image(label="Composite photo", interactive=False, format="png", visible=False)
                with gr.Accordion("Edit to a target value (\"make her 60\")", open=True):
                    with gr.Row():
                        target_name = gr.Dropdown(target_names, value=target_names[0] if target_names else None,
                                                  label="Attribute")  # fmt: skip
                        target_value = gr.Number(label="Target (years, degrees, or a probability 0-1)", value=60)
                        target_tol = gr.Number(label="Tolerance (0: default, e.g. 3 years)", value=0)
                        target_paste = gr.Checkbox(label="Paste back into the photo")
                    target_btn = gr.Button("Edit to target", variant="primary")
                with gr.Accordion("Localized edit", open=False):
                    with gr.Row():
                        local_name = gr.Dropdown(names_all, value=names_all[0] if names_all else None, label="Direction")
                        local_strength = gr.Slider(-4, 4, value=2, step=0.1, label="Strength (standard deviations)")
                        local_region = gr.Radio(list(REGIONS), value="mouth", label="Region (hair: everything outside the face)")
                        local_paste = gr.Checkbox(label="Paste back into the photo")
                    local_btn = gr.Button("Edit this region")
                with gr.Accordion("Expression transfer", open=False):
                    with gr.Row():
                        expr_other = gr.File(label="Face B: a photo or latent file (empty: a random face)",
                                             file_types=["image", ".safetensors"])  # fmt: skip
                        expr_seed = gr.Number(label="random face B seed", value=4, precision=0)
                        expr_mode = gr.Radio([("Replace A's expression", "replace"), ("Add B's to A's", "add")],
                                             value="replace", label="Mode")  # fmt: skip
                        expr_strength = gr.Slider(0, 2, value=1, step=0.1, label="Strength")
                    expr_btn = gr.Button("Transfer expression")
                with gr.Accordion("Augmentation set", open=False):
                    with gr.Row():
                        aug_n = gr.Slider(1, 200, value=16, step=1, label="Variants")
                        aug_seed = gr.Number(label="seed", value=0, precision=0)
                        aug_btn = gr.Button("Make the set (zip with labels.csv)")
                    with gr.Row():
                        aug_file = gr.File(label="Variants (zip)")
                        aug_agreement = gr.JSON(label="Label agreement (share of edits read the requested way)")
                with gr.Accordion("Showcase export", open=False):
                    show_sweep = gr.CheckboxGroup(names_all, value=names_all[:1], label="Sweep along")
                    with gr.Row():
                        show_low = gr.Slider(-4, 0, value=-2, step=0.5, label="from (standard deviations)")
                        show_high = gr.Slider(0, 4, value=2, step=0.5, label="to")
                        show_frames = gr.Slider(4, 96, value=24, step=2, label="frames")
                    show_sheet = gr.CheckboxGroup(names_all, value=names_all[:4], label="Contact sheet rows")
                    show_btn = gr.Button("Export")
                    with gr.Row():
                        show_gif = gr.Image(label="Sweep (GIF)", type="filepath", interactive=False)
                        show_video = gr.Video(label="Sweep (MP4)")
                        show_pair = gr.Image(label="Before / after", type="filepath", interactive=False)
                    show_sheet_img = gr.Image(label="Contact sheet", type="filepath", interactive=False)
                    show_files = gr.File(label="Downloads", file_count="multiple")
                with gr.Accordion("Batch: edit a set of photos", open=False):
                    with gr.Row():
                        batch_photos = gr.File(label=f"Photos (up to {limits.batch_photos()})", file_count="multiple",
                                               file_types=["image"])  # fmt: skip
                        with gr.Column():
                            batch_name = gr.Dropdown(names_all, value=names_all[0] if names_all else None, label="Direction")
                            batch_strength = gr.Slider(-4, 4, value=2, step=0.1, label="Strength (standard deviations)")
                            batch_btn = gr.Button("Edit every photo")
                    with gr.Row():
                        batch_file = gr.File(label="Edited photos and report.csv (zip)")
                        batch_report = gr.Dataframe(headers=["file", "status", "reason", "seconds"], label="Report",
                                                    interactive=False)  # fmt: skip
                create_latent = gr.File(label="latent", visible=False)
                start_row(state, create_face, create_latent, "create")
        gr.Markdown(NOTE)

        model_outputs = [state, about, edit_note_md, conditioning, first, last, *sliders]
        model.change(pick_model, [state, model], model_outputs, api_name="pick_model")
        photo.change(upload, [state, photo], [state, annotated, picker, aligned], api_name="upload")
        align_btn.click(align, [state, picker], [state, annotated, picker, aligned], api_name="align")
        picker.input(align, [state, picker], [state, annotated, picker, aligned], api_name=False)
        rand1.click(random_face, [state, seed1], [state, aligned, latent1], api_name="random_face")
        encode_btn.click(encode, [state], [state, enc_in, enc_out, enc_scores, enc_table, enc_file], api_name="encode")
        opt_btn.click(optimise, [state, steps, space, noise, pti], [state, opt_preview, opt_status, opt_file],
                      api_name="optimise", concurrency_limit=1, concurrency_id=HEAVY)  # fmt: skip
        # Unqueued, so that it gets through while the optimisation holds the queue slot.
        stop_btn.click(stop, [state], None, api_name="stop", queue=False)
        edit_btn.click(edit, [state, conditioning, own_layers, first, last, paste, *sliders],
                       [state, before, after, edit_scores, edit_table, edited_file, composite, composite_file], api_name="edit")  # fmt: skip
        talk_btn.click(talk, [state, text, voice, wpm, audio, talk_method, talk_paste], [video, video_file], api_name="talk",
                       concurrency_limit=1, concurrency_id=HEAVY)  # fmt: skip
        mix_btn.click(mix, [state, other, seed_b, amount, groups], [mixed, mix_file, mix_note], api_name="mix")
        model.change(create_choices, [state], [target_name, local_name, show_sweep, show_sheet, batch_name], api_name=False)
        create_shown = [create_out, create_note, create_composite, create_file]
        target_btn.click(edit_to_target, [state, target_name, target_value, target_tol, target_paste], create_shown,
                         api_name="edit_to_target")  # fmt: skip
        local_btn.click(localized_edit, [state, local_name, local_strength, local_region, local_paste], create_shown,
                        api_name="localized_edit")  # fmt: skip
        expr_btn.click(transfer, [state, expr_other, expr_seed, expr_mode, expr_strength], [create_out, create_note, create_file],
                       api_name="transfer")  # fmt: skip
        aug_btn.click(augment, [state, aug_n, aug_seed], [aug_file, aug_agreement], api_name="augment",
                      concurrency_limit=1, concurrency_id=HEAVY)  # fmt: skip
        show_btn.click(showcase, [state, show_sweep, show_low, show_high, show_frames, show_sheet],
                       [show_gif, show_video, show_pair, show_sheet_img, show_files], api_name="showcase",
                       concurrency_limit=1, concurrency_id=HEAVY)  # fmt: skip
        batch_btn.click(batch, [state, batch_photos, batch_name, batch_strength], [batch_file, batch_report], api_name="batch",
                        concurrency_limit=1, concurrency_id=HEAVY)  # fmt: skip
        # Entering a tab shows the face it will work on.
        for tab, tab_face in ((edit_tab, before), (talk_tab, talk_face), (mix_tab, face_a), (opt_tab, opt_preview),
                              (create_tab, create_face)):
            tab.select(current_face, [state], [tab_face], api_name=False)
        demo.queue(default_concurrency_limit=limits.concurrent_jobs())
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description="Face studio web app")
    parser.add_argument("--weights", type=Path, default=None, help="a local model folder used as the default model")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    args = parser.parse_args()
    limits.cap_memory_arenas()  # before the server's worker threads exist
    if args.weights is not None:
        os.environ[OVERRIDE_ENV] = str(args.weights.resolve())
        global studio
        studio = Studio()
    load_model(studio.model_name)  # fail early, and the first user does not wait for it
    demo = build()
    threading.Thread(target=studio.warm_up, args=(ASSETS / "astronaut.png",), daemon=True).start()
    demo.launch(server_name=args.host, server_port=args.port, show_error=True, max_file_size=limits.upload_bytes())


demo = build() if __name__ != "__main__" else None

if __name__ == "__main__":
    main()
