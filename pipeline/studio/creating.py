"""Step 7 of the studio: edits to a target value, localized edits, augmentation sets, showcases, batches."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import UserError
from ..faces.attributes import IDENTITY_SAME
from ..latent.edit import apply_edits
from .scores import DLIB_LOCK, analyze_faces
from .session import Downloads, EditResult, Session, Steps, safe_name


class CreateSteps(Steps):
    """Creative work on the current face (uses :class:`pipeline.studio.editing.EditSteps`' helpers)."""

    def target_names(self, session: Session | None = None) -> list[str]:
        """Directions whose attribute the classifiers read back: the ones an edit can aim at a value of."""
        from ..faces.attributes import SCORE_NAMES

        return [n for n in self.directions(session) if n in SCORE_NAMES]

    def edit_to_target(self, session: Session, name: str, value: float, tolerance: float | None = None,
                       identity_limit: float = IDENTITY_SAME, paste: bool = False):  # fmt: skip
        """Step the current face along ``name``'s direction until the classifiers read ``value``.

        Returns the :class:`pipeline.latent.target_edit.TargetResult` and the :class:`EditResult` of
        the face it stopped at (the closest one when the target cannot be reached)."""
        from ..latent.target_edit import edit_to_target

        model, wplus = self._face(session)
        measure = analyze_faces
        if session.photo is not None and session.aligned is not None:
            # Read what the user will see: each candidate at the photo's resolution.
            def measure(images):
                return analyze_faces([self.in_photo(session, image).face for image in images])

        result = edit_to_target(session.tuned or model.generator, wplus, model.directions, name, float(value), tolerance,
                                identity_limit, noise=session.latent.noise, measure=measure)  # fmt: skip
        return result, self._show(session, model, result.wplus, paste)

    def localized_edit(self, session: Session, strengths: dict[str, float], region: str,
                       layers: tuple[int, int] | None = None, paste: bool = False) -> EditResult:  # fmt: skip
        """An edit kept to one region of the face (eyes, brows, mouth, nose, face, hair), blended in image space."""
        from ..faces.attributes import analyze
        from ..latent.regions import localize

        model, wplus = self._face(session)
        before = model.render(wplus, session.latent.noise, session.tuned)
        after = model.render(
            apply_edits(wplus, model.directions, strengths, (), layers), session.latent.noise, session.tuned
        )
        with DLIB_LOCK:
            landmarks = analyze([before], identity=False)[0].landmarks
        return self._show(session, model, wplus, paste, image=localize(before, after, region, landmarks))

    def augment(self, session: Session, n: int = 16, seed: int = 0) -> tuple[Path, dict]:
        """A zip of ``n`` labelled variants of the current face (labels.csv inside) and the label agreement."""
        from ..create.augment import label_agreement, make_variants, write_zip
        from ..faces.attributes import analyze

        model, wplus = self._face(session)

        def measure(images):
            with DLIB_LOCK:
                return analyze(images, identity=False)

        variants, base = make_variants(
            session.tuned or model.generator, wplus, model.directions, int(n), int(seed), measure
        )
        original = model.render(wplus, session.latent.noise, session.tuned)
        path = write_zip(session.file(f"{session.photo_name}-variants.zip"), variants, base, original, model.name)
        return path, label_agreement(variants, base)

    def showcase(self, session: Session, sweep: list[str] | tuple[str, ...] = ("age",), span: tuple[float, float] = (-2.0, 2.0),
                 frames: int = 24, sheet: list[str] | tuple[str, ...] = ()) -> Downloads:  # fmt: skip
        """A sweep along ``sweep`` (GIF and MP4), a before/after and a contact sheet of the current face."""
        from ..create.showcase import export_showcase

        model, wplus = self._face(session)
        folder = session.file(f"{session.photo_name}-showcase.d")  # a fresh folder per export
        files = export_showcase(session.tuned or model.generator, wplus, model.directions, folder, list(sweep) or ["age"],
                                span, int(frames), sheet=list(sheet), model=model.name, noise=session.latent.noise)  # fmt: skip
        return Downloads(
            image=files["before_after"], video=files["mp4"], extra={"gif": files["gif"], "sheet": files["sheet"]}
        )

    def batch(self, session: Session, photos: list[str | Path], strengths: dict[str, float]) -> tuple[Path, list]:
        """Each photo's largest face edited and pasted back; a zip of the results with ``report.csv``
        (ok, or why a photo failed) and the report's rows. A bad photo never stops the others."""
        import zipfile

        from .. import limits
        from ..create.batch import Editor, run_batch

        model = self.session_model(session)
        if not photos:
            raise UserError("upload some photos first")
        if len(photos) > limits.batch_photos():
            raise UserError(
                f"{len(photos)} photos; one batch takes at most {limits.batch_photos()} ({limits.BATCH_PHOTOS.env})"
            )
        if not model.directions:
            raise UserError(model.directions_note or f"model {model.name} has no edit directions yet")
        if model.encoder is None:
            raise UserError(f"model {model.name} has no encoder to find each photo's code with")
        work = session.file("batch.d")
        folder = work / "photos"
        folder.mkdir(parents=True)
        for i, photo in enumerate(photos):
            name = safe_name(Path(photo).name) or f"photo{i}"
            shutil.copyfile(photo, folder / (name if not (folder / name).exists() else f"{i}-{name}"))
        editor = Editor(model.generator, model.encoder, model.template, model.directions, strengths, model.name)
        with DLIB_LOCK:
            rows = run_batch(folder, work / "edited", editor)
        archive = session.file(f"{session.photo_name}-batch.zip")
        with zipfile.ZipFile(archive, "w") as z:
            for path in sorted((work / "edited").rglob("*")):
                if path.is_file():
                    z.write(path, path.relative_to(work / "edited").as_posix())
        return archive, rows
