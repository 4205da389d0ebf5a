"""The studio: every step of the app as one object (the steps live in the modules beside this one)."""

from __future__ import annotations

from .creating import CreateSteps
from .editing import EditSteps
from .files import FileSteps
from .photo import PhotoSteps
from .talking import TalkSteps


class Studio(PhotoSteps, EditSteps, TalkSteps, CreateSteps, FileSteps):
    """The steps of the app, one method each; ``model`` names the registry model to use.

    0-3 :class:`~pipeline.studio.photo.PhotoSteps` (model, photo, align, encode, optimise),
    4 and 6 :class:`~pipeline.studio.editing.EditSteps` (edit, paste back, mix, expression),
    5 :class:`~pipeline.studio.talking.TalkSteps`, 7 :class:`~pipeline.studio.creating.CreateSteps`,
    and :class:`~pipeline.studio.files.FileSteps` (random faces, latent files, downloads).
    """
