"""Steps 0-3 of the studio: choosing the model, opening and aligning a photo, encoding and optimising."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..errors import UserError
from ..faces.align import align_face
from ..faces.detection import Face, find_faces, select_face
from ..faces.images import load_image
from ..latent.files import Latent, Space
from ..latent.inversion import DEFAULTS, InversionResult, invert
from ..models.generator import Generator
from ..models.render import from_uint8, to_uint8
from .models import Model, load_model, model_choices
from .scores import DLIB_LOCK, analyze_faces, face_scores
from .session import AlignResult, EncodeResult, OptimiseProgress, Session, Steps


def draw_faces(photo: np.ndarray, faces: list[Face], selected: int) -> np.ndarray:
    """The photo with a box and a number tag per face, the selected one highlighted."""
    im = Image.fromarray(photo)
    draw = ImageDraw.Draw(im)
    line = max(2, round(max(photo.shape[:2]) / 300))
    font = ImageFont.load_default(size=max(14, round(max(photo.shape[:2]) / 30)))
    for i in sorted(range(len(faces)), key=lambda i: i == selected):  # the selected face on top
        f = faces[i]
        colour = (255, 196, 0) if i == selected else (80, 160, 255)
        draw.rectangle(f.box, outline=colour, width=line * (2 if i == selected else 1))
        x0, y0, x1, y1 = draw.textbbox((0, 0), str(i), font=font)
        pad = line * 2
        tag = (
            f.box[0],
            max(0, f.box[1] - (y1 + 2 * pad)),
            f.box[0] + x1 + 2 * pad,
            max(0, f.box[1] - (y1 + 2 * pad)) + y1 + 2 * pad,
        )
        draw.rectangle(tag, fill=colour)
        draw.text((tag[0] + pad, tag[1] + pad - y0 // 2), str(i), fill=(0, 0, 0), font=font)
    return np.asarray(im)


class PhotoSteps(Steps):
    """The model, the photo, its faces and the latent code found for one of them."""

    # ---- 0. sessions and models

    def use_model(self, session: Session, name: str) -> Model:
        """Switch ``session`` to model ``name`` (codes of another model no longer fit)."""
        choice = next((c for c in model_choices() if c.name == name), None)
        if choice is None:
            raise UserError(f"unknown model {name!r}")
        if not choice.loadable:
            raise UserError(f"model {name} cannot be loaded: {choice.reason}")
        model = load_model(name)
        if session.model != name:
            session.model = name
            session.reset_face()
            session.set_target(None)
            if session.photo is not None and session.aligned is not None:
                session.aligned = align_face(session.photo, session.aligned.face, model.template,
                                             model.resolution, session.aligned.face_index)  # fmt: skip
                session.set_target(self._target(session.aligned.image, model))
        return model  # this session's model only: other people keep theirs

    # ---- 1. upload and align

    def open_photo(self, session: Session, source: str | Path | bytes, name: str | None = None) -> list[Face]:
        """Decode an upload and find its faces (largest first)."""
        photo = load_image(source)
        with DLIB_LOCK:
            faces = find_faces(photo)
        session.photo, session.faces = photo, faces
        session.photo_name = Path(name or (str(source) if not isinstance(source, bytes) else "photo")).stem or "photo"
        session.aligned = None
        session.set_target(None)
        session.reset_face()
        return faces

    def align(self, session: Session, index: int = 0) -> AlignResult:
        """Crop face ``index`` of the session's photo the way the model's training faces were cropped."""
        if session.photo is None:
            raise UserError("upload a photo first")
        model = self.session_model(session)
        face = select_face(session.faces, index)
        session.aligned = align_face(session.photo, face, model.template, model.resolution, face_index=index)
        session.set_target(self._target(session.aligned.image, model))
        session.reset_face()
        return AlignResult(session.faces, index, draw_faces(session.photo, session.faces, index), session.aligned.image)

    @staticmethod
    def _target(image: np.ndarray, model: Model) -> np.ndarray:
        if image.shape[0] == model.resolution:
            return image
        return np.asarray(Image.fromarray(image).resize((model.resolution,) * 2, Image.Resampling.LANCZOS))

    def encode(self, session: Session) -> EncodeResult:
        """The encoder's code for the aligned face, its reconstruction and scores."""
        if session.target is None:
            raise UserError("align a face first (tab 1), or start from a random face")
        model = self.session_model(session)
        if model.encoder is None:
            raise UserError(f"model {model.name} has no encoder: use Optimise, which starts from the average face")
        with torch.no_grad():
            wplus = model.encoder.wplus(from_uint8(session.target)[None].to(model.generator.device))
        latent = Latent(latent=wplus.cpu(), model=model.name, space="wplus", alignment=model.template)
        self._set_code(session, latent, "encoder")
        return EncodeResult(latent, session.reconstruction, self.scores(session, session.reconstruction))

    def _set_code(self, session: Session, latent: Latent, origin: str, tuned: Generator | None = None) -> None:
        model = self.session_model(session)
        if session.aligned is not None:  # a downloaded latent can be pasted back into the photo later
            latent.transform = session.aligned.to_dict()
        session.latent, session.origin, session.tuned, session.edited = latent, origin, tuned, None
        session.reconstruction = model.render(latent.wplus(model.n_latent), latent.noise, tuned)

    def scores(self, session: Session, image: np.ndarray) -> dict:
        """Attributes of ``image`` and how it compares with the session's target face."""
        if session.target is None:
            return face_scores(image)
        if session.target_attrs is None:
            session.target_attrs = analyze_faces([session.target])[0]
        return face_scores(image, session.target, session.target_attrs)

    def optimise(
        self,
        session: Session,
        steps: int = DEFAULTS.steps,
        space: Space = "wplus",
        noise: bool = False,
        pti: bool = False,
        callback: Callable[[int, float, np.ndarray], bool | None] | None = None,
        preview_every: int = 10,
    ) -> InversionResult:
        """Refine the code by optimisation, from the current code (else the encoder's guess).

        ``session.cancel`` stops it early; the best code so far is kept.
        """
        if session.target is None:
            raise UserError("align a face first (tab 1): optimisation needs a target photo")
        if int(steps) < 1:
            raise UserError("steps must be at least 1")  # the upper limit is checked by invert
        if space not in ("w", "wplus"):
            raise UserError("latent space must be 'w' or 'wplus'")
        model = self.session_model(session)
        init = session.latent.latent if session.latent is not None and session.origin != "random" else None
        session.cancel.clear()
        result = invert(model.generator, session.target, model.encoder, init=init, steps=int(steps), space=space,
                        optimize_noise=bool(noise), pti=bool(pti), callback=callback, cancel=session.cancel,
                        preview_every=preview_every)  # fmt: skip
        latent = result.latent(model.name, model.template)
        self._set_code(session, latent, "optimised", result.generator)
        session.reconstruction = to_uint8(result.image[0])
        return result

    def optimise_stream(self, session: Session, steps: int = DEFAULTS.steps, space: Space = "wplus", noise: bool = False,
                        pti: bool = False, preview_every: int = 10) -> Iterator[OptimiseProgress | InversionResult]:  # fmt: skip
        """:meth:`optimise` as a stream: progress every ``preview_every`` steps, then the result.

        The optimisation runs in a worker thread so that a UI can show previews while it runs.
        """
        events: queue.Queue = queue.Queue()
        total = int(steps) + (DEFAULTS.pti_steps if pti else 0)

        def report(step: int, loss: float, preview: np.ndarray) -> None:
            events.put(OptimiseProgress(step, total, loss, preview))

        def work() -> None:
            try:
                events.put(self.optimise(session, steps, space, noise, pti, report, preview_every))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises
                events.put(exc)

        worker = threading.Thread(target=work, name="studio-optimise", daemon=True)
        worker.start()
        try:
            while True:
                item = events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, InversionResult):
                    return
        finally:
            # A consumer that goes away (closed tab) stops the work too.
            session.cancel.set()
            worker.join()

    def stop(self, session: Session) -> None:
        session.cancel.set()
