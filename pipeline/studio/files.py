"""Random faces, latent files, examples, warm-up and downloads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from ..faces.detection import detect_faces
from ..faces.images import save_image
from ..latent.directions import TRUNCATION
from ..latent.files import Latent, load_latent_for, save_latent
from ..latent.prior import sample_wplus
from .models import Model
from .scores import DLIB_LOCK
from .session import Session, Steps


class FileSteps(Steps):
    """Codes that do not come from a photo (random faces, latent files) and the files handed out."""

    @staticmethod
    def random_latent(model: Model, seed: int) -> Latent:
        """A random face: from the model's prior when it ships one (see ``latent.prior``)."""
        code = sample_wplus(model.generator, 1, seed, TRUNCATION, model.prior, model.w_mean)
        return Latent(latent=code.cpu(), model=model.name, space="wplus", alignment=model.template)

    def random_face(self, session: Session, seed: int | None = None) -> np.ndarray:
        """Start over from a random face of the model (no photo: nothing to paste back into)."""
        model = self.session_model(session)
        seed = int(seed) if seed is not None else int.from_bytes(os.urandom(4), "little")
        session.photo, session.faces, session.aligned = None, [], None
        self._set_code(session, self.random_latent(model, seed), "random")
        session.set_target(session.reconstruction)
        return session.reconstruction

    def read_latent(self, session: Session, path: str | Path) -> Latent:
        model = self.session_model(session)
        latent = load_latent_for(path, model.generator, model.name)
        if latent.latent.shape[0] != 1:
            raise UserError(f"{Path(path).name} holds {latent.latent.shape[0]} codes; the studio edits one face")
        return latent

    def use_latent_file(self, session: Session, path: str | Path) -> np.ndarray:
        """Continue from a saved latent file (a PTI-tuned generator beside it is not carried over)."""
        self._set_code(session, self.read_latent(session, path), "file")
        if session.target is None:
            session.set_target(session.reconstruction)
        return session.reconstruction

    def example_face(self, folder: Path, seed: int = 0, size: int = 256) -> Path | None:
        """A generated face saved as a photo (enlarged so the detector finds it), or None when
        the model's face is not recognisable as one."""
        model = self.model
        # Named by the weights too: retrained weights under the same name get a fresh example.
        digest = hashlib.sha1(model.generator.input.input.detach().cpu().numpy().tobytes()).hexdigest()[:10]
        path = folder / f"{model.name}-{digest}-seed{seed}.png"
        if not path.is_file():
            face = model.render(self.random_latent(model, seed).wplus(model.n_latent))
            big = np.asarray(Image.fromarray(face).resize((size, size), Image.Resampling.LANCZOS))
            with DLIB_LOCK:
                found = detect_faces(big, cnn_fallback=False)
            if not found:
                return None
            folder.mkdir(parents=True, exist_ok=True)
            save_image(big, path, model=model.name)
        return path

    def warm_up(self, photo: str | Path) -> None:
        """Run every model once (detector, landmarks, encoder, attributes) so the first user does not wait."""
        session = self.new_session()
        try:
            self.open_photo(session, photo)
            self.align(session, 0)
            if self.model.encoder is not None:
                self.encode(session)
        finally:
            session.close()

    def save_latent(self, session: Session) -> Path:
        if session.latent is None:
            raise UserError("there is no latent code yet")
        return save_latent(session.file(f"{session.photo_name}-latent.safetensors"), session.latent)

    def save_image(self, session: Session, image: np.ndarray, kind: str) -> Path:
        return save_image(
            image, session.file(f"{session.photo_name}-{kind}.png"), model=self.session_model(session).name
        )
