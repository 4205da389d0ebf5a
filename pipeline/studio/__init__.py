"""The studio's steps as plain Python: one method per tab of the app, on arrays and dataclasses.

``Studio`` is what the Gradio app (``app.py``) calls, and what a script or test can call
without it: align, encode, optimise, edit, paste back, talk, mix, random face, and the creative
steps (edit to a target, localized edit, expression transfer, augmentation set, showcase). Models are
loaded once per process and shared read-only by every session (:func:`load_model` is
cached; inversion never writes to the shared generator); the command line reads models with the
same loader (:func:`pipeline.studio.models.read_model`). Everything that belongs to one
user lives in a :class:`Session`: their photo, faces, latent code, tuned generator and a
private folder for downloads, deleted by :meth:`Session.close`.

- ``models``: the model loader, the model picker's choices and the model folder override;
- ``session``: one user's session and the results the steps return;
- ``scores``: how a face reads (attributes, identity, likeness);
- ``photo``, ``editing``, ``talking``, ``creating``, ``files``: the steps, by tab;
- ``facade``: :class:`Studio`, all the steps together.
"""

from .facade import Studio
from .models import OVERRIDE_ENV, Model, ModelChoice, default_model, load_model, model_choices, read_model
from .session import Session

__all__ = [
    "OVERRIDE_ENV",
    "Model",
    "ModelChoice",
    "Session",
    "Studio",
    "default_model",
    "load_model",
    "model_choices",
    "read_model",
]
