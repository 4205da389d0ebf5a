"""Face studio: the Gradio app. Layout and wiring only (``app_ui/``); the work is done by ``pipeline.studio``.

Run ``python app.py`` (``--weights DIR`` to use a local model folder, ``--port N``).
"""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path

import gradio as gr

from app_ui import handlers, tabs
from pipeline import limits
from pipeline.studio import load_model, model_choices

NOTE = (
    "**Use responsibly.** Edit only photos of people who agreed to it, and never use the results to "
    "impersonate anyone or to deceive. Every image and video the studio makes is tagged as AI-edited. "
    "The face model was trained on UTKFace, for non-commercial research."
)


def build() -> gr.Blocks:
    choices = model_choices()
    default = next((c.name for c in choices if c.loadable), choices[0].name)
    loaded = handlers.initial_model(default)
    with gr.Blocks(title="Face studio", delete_cache=(1800, 3600)) as demo:
        # Deleted (with its files) when the tab closes, or after the idle time: API clients never close.
        state = gr.State(handlers.new_session, delete_callback=handlers.close_session, time_to_live=limits.session_seconds())
        gr.Markdown("# Face studio\nAlign a face, find its latent code, edit it, make it talk, mix it with another.")
        with gr.Row():
            model = gr.Dropdown([(c.label, c.name) for c in choices], value=default, label="Model", scale=2)
            about = gr.Markdown(handlers.summary(loaded))
        with gr.Tabs():
            tabs.upload_tab(state)
            tabs.encode_tab(state)
            optimise = tabs.optimise_tab(state)
            edit = tabs.edit_tab(state, loaded)
            talk = tabs.talk_tab(state)
            mix = tabs.mix_tab(state)
            create = tabs.create_tab(state, loaded)
        gr.Markdown(NOTE)
        model.change(handlers.pick_model, [state, model], [state, about, *edit.model_outputs], api_name="pick_model")
        model.change(handlers.create_choices, [state], create.pickers, api_name=False)
        # Entering a tab shows the face it will work on.
        for shown in (edit, mix, optimise, create):
            shown.tab.select(handlers.current_face, [state], [shown.face], api_name=False)
        talk.tab.select(handlers.talk_face, [state], [talk.face], api_name=False)
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
        handlers.use_weights(args.weights)
    load_model(handlers.studio.model_name)  # fail early, and the first user does not wait for it
    demo = build()
    threading.Thread(target=handlers.studio.warm_up, args=(tabs.ASSETS / "astronaut.png",), daemon=True).start()
    demo.launch(server_name=args.host, server_port=args.port, show_error=True, max_file_size=limits.upload_bytes())


demo = build() if __name__ != "__main__" else None

if __name__ == "__main__":
    main()
