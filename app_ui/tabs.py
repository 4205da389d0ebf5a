"""The page, one builder per tab: each lays out its tab and wires its own buttons to their handlers.

A builder returns what the page wires across tabs (the tab itself, the face it shows, and the
parts a change of model updates).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np

from pipeline import limits
from pipeline.errors import UserError
from pipeline.faces.attributes import SCORE_NAMES
from pipeline.latent.directions import layer_groups
from pipeline.latent.inversion import DEFAULTS
from pipeline.latent.regions import REGIONS
from pipeline.studio import Model
from pipeline.talk import speech
from pipeline.talk.atnet import METHODS as TALK_METHODS

from . import handlers as h
from .widgets import AUTO_METHOD, FACE_FILES, HEAVY, SLIDER_GROUPS, face_image, keeps_note, photo_input, slot_names

ASSETS = Path(__file__).resolve().parents[1] / "assets"
EXAMPLES = Path(tempfile.gettempdir()) / "studio-examples"


def example_faces() -> list[list[str]]:
    examples = [[str(ASSETS / "astronaut.png")], [str(ASSETS / "mona_lisa.jpg")]]
    try:  # one of the model's own faces, made once per model and kept with the app's examples
        generated = h.studio.example_face(EXAMPLES)
    except UserError:
        generated = None
    return examples + ([[str(generated)]] if generated else [])


def start_row(state: gr.State, face: gr.Image, latent_file: gr.File, tab: str) -> None:
    """Every step can start from the previous step, a fresh upload or a random face."""
    with gr.Accordion("Start from something else", open=False):
        with gr.Row():
            source = gr.File(label="photo or latent file (.safetensors)", file_types=FACE_FILES)
            with gr.Column():
                use = gr.Button("Use this file")
                seed = gr.Number(label="seed (-1: any)", value=-1, precision=0)
                rand = gr.Button("Random face")
    use.click(h.start_from_file, [state, source], [state, face, latent_file], api_name=f"start_from_file_{tab}")
    rand.click(h.random_face, [state, seed], [state, face, latent_file], api_name=f"random_face_{tab}")


def _scores_column(elem_id: str) -> tuple[gr.Markdown, gr.JSON]:
    """The scores as a table, and all of them (JSON) folded away."""
    with gr.Column():
        table = gr.Markdown(elem_id=elem_id)
        with gr.Accordion("All scores", open=False):
            scores = gr.JSON(label="Scores")
    return table, scores


def upload_tab(state: gr.State) -> SimpleNamespace:
    with gr.Tab("1 Upload & align") as tab:
        with gr.Row():
            photo = photo_input(label="Photo", sources=["upload", "webcam"])
            annotated = gr.Image(label="Faces found", interactive=False, format="png")
            with gr.Column():
                picker = gr.Radio(label="Face to edit (largest first)", choices=[])
                aligned = face_image("Aligned face", elem_id="aligned")
                align_btn = gr.Button("Align", variant="primary")
        gr.Examples(example_faces(), inputs=[photo], label="Examples")
        with gr.Row(equal_height=True):
            seed = gr.Number(label="seed (-1: any)", value=-1, precision=0, scale=1, min_width=120)
            rand = gr.Button("Or start from a random face", scale=3)
            latent = gr.File(label="latent", visible=False)
    shown = [state, annotated, picker, aligned]
    photo.change(h.upload, [state, photo], shown, api_name="upload")
    align_btn.click(h.align, [state, picker], shown, api_name="align")
    picker.input(h.align, [state, picker], shown, api_name=False)
    rand.click(h.random_face, [state, seed], [state, aligned, latent], api_name="random_face")
    return SimpleNamespace(tab=tab, face=aligned)


def encode_tab(state: gr.State) -> SimpleNamespace:
    with gr.Tab("2 Encode") as tab:
        with gr.Row():
            shown = face_image("Input (aligned)")
            recon = face_image("Reconstruction", elem_id="reconstruction")
            table, scores = _scores_column("encode-scores")
        encode_btn = gr.Button("Encode", variant="primary")
        latent = gr.File(label="Latent file")
        start_row(state, recon, latent, "encode")
    encode_btn.click(h.encode, [state], [state, shown, recon, scores, table, latent], api_name="encode")
    return SimpleNamespace(tab=tab, face=recon)


def optimise_tab(state: gr.State) -> SimpleNamespace:
    with gr.Tab("3 Optimise") as tab:
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
                preview = face_image("Reconstruction")
                status = gr.Markdown()
                latent = gr.File(label="Latent file")
        start_row(state, preview, latent, "optimise")
    opt_btn.click(h.optimise, [state, steps, space, noise, pti], [state, preview, status, latent],
                  api_name="optimise", concurrency_limit=1, concurrency_id=HEAVY)  # fmt: skip
    # Unqueued, so that it gets through while the optimisation holds the queue slot.
    stop_btn.click(h.stop, [state], None, api_name="stop", queue=False)
    return SimpleNamespace(tab=tab, face=preview)


def _direction_sliders(loaded: Model | None) -> list[gr.Slider]:
    """One slider per slot, grouped (attributes, emotions, pose, discovered); unused slots hidden."""
    directions = loaded.directions if loaded else {}
    names = slot_names(directions)
    starts = dict(zip(SLIDER_GROUPS, np.cumsum([0, *SLIDER_GROUPS.values()])))
    filled = [g for g, n in SLIDER_GROUPS.items() if names[starts[g]] is not None]
    sliders, i = [], 0
    for group, count in SLIDER_GROUPS.items():
        with gr.Accordion(group, open=group == (filled[0] if filled else "Attributes")):
            for name in names[i : i + count]:
                sliders.append(gr.Slider(-4, 4, value=0, step=0.1, label=name, visible=name is not None,
                                         info=keeps_note(directions.get(name)) if name else None))  # fmt: skip
        i += count
    return sliders


def edit_tab(state: gr.State, loaded: Model | None) -> SimpleNamespace:
    names = list(loaded.directions) if loaded else []
    last_layer = loaded.n_latent - 1 if loaded else 9
    with gr.Tab("4 Edit") as tab:
        note = gr.Markdown(h.edit_note(loaded))
        with gr.Row():
            with gr.Column():
                sliders = _direction_sliders(loaded)
                keep = gr.Checkbox(value=True, label="Each edit keeps what it should not move (the 'keeps' under each slider)")
                with gr.Accordion("Advanced", open=False):
                    conditioning = gr.CheckboxGroup(label="Also hold these directions (projected out)", choices=names)
                    own_layers = gr.Checkbox(value=True, label="Each direction on its own layers")
                    first = gr.Slider(0, last_layer, value=0, step=1, label="first layer")
                    last = gr.Slider(0, last_layer, value=last_layer, step=1, label="last layer")
                paste = gr.Checkbox(label="Paste back into the original photo")
                edit_btn = gr.Button("Edit", variant="primary")
            before = face_image("Before (photo resolution)")
            after = face_image("After (photo resolution)", elem_id="after")
            table, scores = _scores_column("edit-scores")
        with gr.Accordion("Model view (the generator's own faces)", open=False), gr.Row():
            model_before = face_image("Reconstruction")
            model_after = face_image("Edited")
        with gr.Row():
            composite = gr.Image(label="Composite photo", interactive=False, format="png", visible=False)
            with gr.Column():
                edited_file = gr.File(label="Edited face")
                composite_file = gr.File(label="Composite photo", visible=False)
        latent = gr.File(label="latent", visible=False)
        start_row(state, before, latent, "edit")
    inputs = [state, conditioning, keep, own_layers, first, last, paste, *sliders]
    outputs = [state, before, after, scores, table, edited_file, composite, composite_file, model_before, model_after]
    edit_btn.click(h.edit, inputs, outputs, api_name="edit")
    for slider in sliders:  # live: the face follows a slider when it is let go, its scores just after
        slider.release(h.edit_live, inputs, outputs, api_name=False, trigger_mode="always_last").success(
            h.edit_scores, [state], [scores, table], api_name=False)  # fmt: skip
    return SimpleNamespace(tab=tab, face=before, model_outputs=[note, conditioning, first, last, *sliders])


def talk_tab(state: gr.State) -> SimpleNamespace:
    with gr.Tab("5 Talk") as tab:
        gr.Markdown(h.studio.talk_status() or "Type a sentence (or upload a recording) and make a video of the face saying it.")
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="Text to say", max_lines=4, placeholder="Hello! Nice to meet you.")
                voice = gr.Dropdown(list(speech.VOICES), value=speech.DEFAULT_VOICE, label="Voice")
                wpm = gr.Slider(*speech.WPM_RANGE, value=160, step=10, label="Speed (words per minute)")
                audio = gr.Audio(label="...or lip-sync this recording", type="filepath")
                with gr.Row():
                    method = gr.Dropdown([AUTO_METHOD, *TALK_METHODS], value=AUTO_METHOD, label="Mouth motion",
                                         info="auto: phoneme timings for text, the AT-net for a recording")  # fmt: skip
                    paste = gr.Checkbox(label="Paste back into the photo", value=True)
                with gr.Row():
                    head_motion = gr.Checkbox(label="Natural head motion", value=True)
                    keep_expression = gr.Checkbox(label="Keep the expression while talking", value=False,
                                                  info="off: a smiling face talks with a relaxed mouth")  # fmt: skip
                talk_btn = gr.Button("Make video", variant="primary")
            face = face_image("Face")
            video = gr.Video(label="Video")
        video_file = gr.File(label="Video file")
        latent = gr.File(label="latent", visible=False)
        start_row(state, face, latent, "talk")
    talk_btn.click(h.talk, [state, text, voice, wpm, audio, method, paste, head_motion, keep_expression],
                   [video, video_file], api_name="talk",
                   concurrency_limit=1, concurrency_id=HEAVY)  # fmt: skip
    return SimpleNamespace(tab=tab, face=face)


def mix_tab(state: gr.State) -> SimpleNamespace:
    with gr.Tab("6 Mix") as tab:
        with gr.Row():
            face_a = face_image("Face A (current)")
            with gr.Column():
                other = gr.File(label="Face B: a photo or latent file (empty: a random face)", file_types=FACE_FILES)
                seed_b = gr.Number(label="random face B seed", value=1, precision=0)
            mixed = face_image("Mix")
        amount = gr.Slider(0, 1, value=0.5, step=0.05, label="Interpolation (0: A, 1: B)")
        groups = gr.CheckboxGroup(list(layer_groups(10)), label="Take these layers from B (coarse: pose and shape; "
                                  "middle: features; fine: colour)")  # fmt: skip
        mix_btn = gr.Button("Mix", variant="primary")
        note = gr.Markdown()
        mix_file = gr.File(label="Mixed face")
        latent = gr.File(label="latent", visible=False)
        start_row(state, face_a, latent, "mix")
    mix_btn.click(h.mix, [state, other, seed_b, amount, groups], [mixed, mix_file, note], api_name="mix")
    return SimpleNamespace(tab=tab, face=face_a)


def create_tab(state: gr.State, loaded: Model | None) -> SimpleNamespace:
    names = list(loaded.directions) if loaded else []
    with gr.Tab("7 Create") as tab:
        gr.Markdown("Aim an edit at a value, keep it to one region, give the face another's expression, "
                    "make a labelled set of variants, or export a demo.")  # fmt: skip
        with gr.Row():
            face = face_image("Face (current)")
            out = face_image("Result")
            with gr.Column():
                note = gr.Markdown(elem_id="create-note")
                result_file = gr.File(label="Result face")
        composite = gr.Image(label="Composite photo", interactive=False, format="png", visible=False)
        shown = [out, note, composite, result_file]
        target_name = _target_section(state, names, shown)
        local_name = _local_section(state, names, shown)
        _expression_section(state, [out, note, result_file])
        _augment_section(state)
        sweep, sheet = _showcase_section(state, names)
        batch_name = _batch_section(state, names)
        latent = gr.File(label="latent", visible=False)
        start_row(state, face, latent, "create")
    return SimpleNamespace(tab=tab, face=face, pickers=[target_name, local_name, sweep, sheet, batch_name])


def _first(options: list[str]) -> str | None:
    return options[0] if options else None


def _target_section(state: gr.State, names: list[str], shown: list) -> gr.Dropdown:
    targets = [n for n in names if n in SCORE_NAMES]
    with gr.Accordion("Edit to a target value (\"make her 60\")", open=True):
        with gr.Row():
            name = gr.Dropdown(targets, value=_first(targets), label="Attribute")
            value = gr.Number(label="Target (years, degrees, or a probability 0-1)", value=60)
            tolerance = gr.Number(label="Tolerance (0: default, e.g. 3 years)", value=0)
            paste = gr.Checkbox(label="Paste back into the photo")
        button = gr.Button("Edit to target", variant="primary")
    button.click(h.edit_to_target, [state, name, value, tolerance, paste], shown, api_name="edit_to_target")
    return name


def _local_section(state: gr.State, names: list[str], shown: list) -> gr.Dropdown:
    with gr.Accordion("Localized edit", open=False):
        with gr.Row():
            name = gr.Dropdown(names, value=_first(names), label="Direction")
            strength = gr.Slider(-4, 4, value=2, step=0.1, label="Strength (standard deviations)")
            region = gr.Radio(list(REGIONS), value="mouth", label="Region (hair: everything outside the face)")
            paste = gr.Checkbox(label="Paste back into the photo")
        button = gr.Button("Edit this region")
    button.click(h.localized_edit, [state, name, strength, region, paste], shown, api_name="localized_edit")
    return name


def _expression_section(state: gr.State, shown: list) -> None:
    with gr.Accordion("Expression transfer", open=False):
        with gr.Row():
            other = gr.File(label="Face B: a photo or latent file (empty: a random face)", file_types=FACE_FILES)
            seed = gr.Number(label="random face B seed", value=4, precision=0)
            mode = gr.Radio([("Replace A's expression", "replace"), ("Add B's to A's", "add")], value="replace", label="Mode")
            strength = gr.Slider(0, 2, value=1, step=0.1, label="Strength")
        button = gr.Button("Transfer expression")
    button.click(h.transfer, [state, other, seed, mode, strength], shown, api_name="transfer")


def _augment_section(state: gr.State) -> None:
    with gr.Accordion("Augmentation set", open=False):
        with gr.Row():
            n = gr.Slider(1, 200, value=16, step=1, label="Variants")
            seed = gr.Number(label="seed", value=0, precision=0)
            button = gr.Button("Make the set (zip with labels.csv)")
        with gr.Row():
            archive = gr.File(label="Variants (zip)")
            agreement = gr.JSON(label="Label agreement (share of edits read the requested way)")
    button.click(h.augment, [state, n, seed], [archive, agreement], api_name="augment", concurrency_limit=1,
                 concurrency_id=HEAVY)  # fmt: skip


def _showcase_section(state: gr.State, names: list[str]) -> tuple[gr.CheckboxGroup, gr.CheckboxGroup]:
    with gr.Accordion("Showcase export", open=False):
        sweep = gr.CheckboxGroup(names, value=names[:1], label="Sweep along")
        with gr.Row():
            low = gr.Slider(-4, 0, value=-2, step=0.5, label="from (standard deviations)")
            high = gr.Slider(0, 4, value=2, step=0.5, label="to")
            frames = gr.Slider(4, 96, value=24, step=2, label="frames")
        sheet = gr.CheckboxGroup(names, value=names[:4], label="Contact sheet rows")
        button = gr.Button("Export")
        with gr.Row():
            gif = gr.Image(label="Sweep (GIF)", type="filepath", interactive=False)
            video = gr.Video(label="Sweep (MP4)")
            pair = gr.Image(label="Before / after", type="filepath", interactive=False)
        sheet_image = gr.Image(label="Contact sheet", type="filepath", interactive=False)
        files = gr.File(label="Downloads", file_count="multiple")
    button.click(h.showcase, [state, sweep, low, high, frames, sheet], [gif, video, pair, sheet_image, files],
                 api_name="showcase", concurrency_limit=1, concurrency_id=HEAVY)  # fmt: skip
    return sweep, sheet


def _batch_section(state: gr.State, names: list[str]) -> gr.Dropdown:
    with gr.Accordion("Batch: edit a set of photos", open=False):
        with gr.Row():
            photos = gr.File(label=f"Photos (up to {limits.batch_photos()})", file_count="multiple", file_types=["image"])
            with gr.Column():
                name = gr.Dropdown(names, value=_first(names), label="Direction")
                strength = gr.Slider(-4, 4, value=2, step=0.1, label="Strength (standard deviations)")
                button = gr.Button("Edit every photo")
        with gr.Row():
            archive = gr.File(label="Edited photos and report.csv (zip)")
            report = gr.Dataframe(headers=["file", "status", "reason", "seconds"], label="Report", interactive=False)
    button.click(h.batch, [state, photos, name, strength], [archive, report], api_name="batch", concurrency_limit=1,
                 concurrency_id=HEAVY)  # fmt: skip
    return name
