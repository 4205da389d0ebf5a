"""Steps 4 and 6 of the studio: editing along directions, pasting back, mixing and expression transfer."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..faces.photo_render import PhotoEdit, face_view, render_on_photo
from ..latent.directions import Direction
from ..latent.edit import apply_edits
from ..latent.files import Latent
from ..latent.mixing import mix_codes
from .models import Model
from .scores import analyze_faces, face_scores
from .session import EditResult, Session, Steps


class EditSteps(Steps):
    """The current face moved along directions, pasted back, mixed with another or given its expression."""

    def directions(self, session: Session | None = None) -> dict[str, Direction]:
        return (self.session_model(session) if session else self.model).directions

    def edit(
        self,
        session: Session,
        strengths: dict[str, float],
        conditioning: list[str] | tuple[str, ...] = (),
        layers: tuple[int, int] | None = None,
        paste: bool = False,
        keep: bool = True,
        scores: bool = True,
    ) -> EditResult:
        """The current face moved along edit directions; optionally pasted into the photo.

        ``keep``: each edit keeps what its direction was fitted to hold (``info["keeps"]``);
        off, directions that have one use their variant fitted on the attribute alone.
        ``scores`` off: no attributes are read (``edit_scores`` reads them later), so that a live
        slider shows the face first; reading them costs as much as the edit itself."""
        model = self.session_model(session)
        if session.latent is None:
            raise UserError("encode a face first (tab 2), or start from a random face")
        if not model.directions:
            raise UserError(model.directions_note or f"model {model.name} has no edit directions yet")
        wplus = apply_edits(session.latent.wplus(model.n_latent).to(model.generator.device), model.directions,
                            strengths, conditioning, layers, keep)  # fmt: skip
        return self._show(session, model, wplus, paste, with_scores=scores)

    def edit_scores(self, session: Session) -> dict:
        """The scores of the last edit (see ``edit(scores=False)``), read on what the user sees: with a
        photo, the edited face at the photo's resolution against the photo's own face (the model's
        renders can read otherwise: a paler brow there reads as a man's where the photo's does not)."""
        if session.edited is None:
            raise UserError("edit the face first")
        if session.edited_face is None:
            return self.scores(session, session.edited)
        photo_face = self.photo_face(session)
        if session.photo_face_attrs is None:
            session.photo_face_attrs = analyze_faces([photo_face])[0]
        return face_scores(session.edited_face, photo_face, session.photo_face_attrs)

    def photo_face(self, session: Session) -> np.ndarray | None:
        """The photo's face at the photo's own resolution (None when the face came from elsewhere)."""
        if session.photo is None or session.aligned is None:
            return None
        if session.photo_face is None:  # cut once per alignment: every edit and its scores show it
            session.photo_face = face_view(session.photo, session.aligned)
        return session.photo_face

    def paste(self, session: Session, face: np.ndarray | None = None, reference: np.ndarray | None = None) -> np.ndarray:
        """``face`` (default: the last edit) rendered into the original photo at its resolution."""
        face = face if face is not None else session.edited
        if face is None:
            raise UserError("edit the face first")
        if session.photo is None or session.aligned is None:
            raise UserError("paste back needs an uploaded photo: this face did not come from one")
        return self.in_photo(session, face, reference).photo

    def in_photo(self, session: Session, face: np.ndarray, reference: np.ndarray | None = None) -> PhotoEdit:
        """The change from ``reference`` (default: the current code's render) to ``face`` applied to the
        photo itself, so the result keeps the photo's resolution and detail (see ``faces.photo_render``)."""
        reference = session.reconstruction if reference is None else reference
        return render_on_photo(session.photo, session.aligned, reference, face)

    def _face(self, session: Session) -> tuple[Model, torch.Tensor]:
        model = self.session_model(session)
        if session.latent is None:
            raise UserError("encode a face first (tab 2), or start from a random face")
        if not model.directions:
            raise UserError(model.directions_note or f"model {model.name} has no edit directions yet")
        return model, session.latent.wplus(model.n_latent).to(model.generator.device)

    def _show(self, session: Session, model: Model, wplus: torch.Tensor, paste: bool = False,
              image: np.ndarray | None = None, reference: np.ndarray | None = None,
              with_scores: bool = True) -> EditResult:  # fmt: skip
        """The edited face (rendered from ``wplus`` unless given) with its scores; at the photo's
        resolution when there is a photo, and the whole photo too if asked."""
        image = model.render(wplus, session.latent.noise, session.tuned) if image is None else image
        session.edited, session.edited_face = image, None
        result = EditResult(image, {})
        if session.photo is not None and session.aligned is not None:
            rendered = self.in_photo(session, image, reference)
            result.face = session.edited_face = rendered.face
            result.composite = rendered.photo if paste else None
        elif paste:
            self.paste(session, image)  # says why it cannot
        if with_scores:
            result.scores = self.edit_scores(session)
        return result

    def mix(
        self,
        session: Session,
        other: Latent,
        amount: float = 0.5,
        groups: list[str] | tuple[str, ...] = (),
    ) -> np.ndarray:
        """Interpolate the current face towards ``other`` by ``amount`` (0: this face, 1: the other),
        then take the named layer groups (coarse / middle / fine) wholly from the other face."""
        model = self.session_model(session)
        if session.latent is None:
            raise UserError("encode a face first (tab 2), or start from a random face")
        a = session.latent.wplus(model.n_latent).to(model.generator.device)
        return model.render(mix_codes(a, other.wplus(model.n_latent), amount, groups))

    def mix_in_photo(self, session: Session, mixed: np.ndarray) -> PhotoEdit | None:
        """A mix rendered into the photo (None without one); the reference is face A rendered the way
        mixes are, so a mix at 0 gives the photo back."""
        if session.photo is None or session.aligned is None or session.latent is None:
            return None
        model = self.session_model(session)
        return self.in_photo(session, mixed, model.render(session.latent.wplus(model.n_latent)))

    def mix_identity(self, session: Session, other: Latent, mixed: np.ndarray) -> dict[str, float | None]:
        """dlib identity distance of a mix to face A (the current code) and to face B (same person below 0.6);
        None where no face is found."""
        from ..faces.attributes import identity_distance

        model = self.session_model(session)
        # Both rendered the way the mix is (shared noise, shipped generator): at 0 the mix is A exactly.
        a = model.render(session.latent.wplus(model.n_latent))
        b = model.render(other.wplus(model.n_latent))
        found = analyze_faces([mixed, a, b])
        out: dict[str, float | None] = {}
        for name, ref in (("to_a", found[1]), ("to_b", found[2])):
            ok = found[0].identity is not None and ref.identity is not None
            out[name] = round(identity_distance(found[0], ref), 3) if ok else None
        return out

    def other_face(self, session: Session, source: str | Path | None = None, seed: int | None = None) -> Latent:
        """The second face for mixing: a photo (its largest face, encoded), a latent file, or a random face."""
        model = self.session_model(session)
        if source is None:
            return self.random_latent(model, seed if seed is not None else int(time.time()))
        source = Path(source)
        if source.suffix == ".safetensors":
            return self.read_latent(session, source)
        other = Session(model=model.name)
        self.open_photo(other, source)
        self.align(other, 0)
        return self.encode(other).latent

    def transfer(self, session: Session, other: Latent, mode: str = "replace", strength: float = 1.0) -> EditResult:
        """The current face with ``other``'s expression (emotion, smile and mouth directions only)."""
        from ..latent.expression import transfer_expression

        model, a = self._face(session)
        moved = transfer_expression(a, other.wplus(model.n_latent), model.directions, model.w_mean, mode, strength)
        result = self._show(session, model, moved)
        result.scores["expression_source"] = face_scores(model.render(other.wplus(model.n_latent)))
        return result
