"""Step 5 of the studio: talking-head videos of the current face."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .models import weights_dir
from .scores import DLIB_LOCK
from .session import Session, Steps


class TalkSteps(Steps):
    """A video of the current face saying a sentence or lip-syncing a recording."""

    def talk_status(self, session: Session | None = None) -> str:
        """Empty when the model can make talking-head videos; otherwise why not."""
        from ..talk.talking_head import REFIT_COMMAND, talk_map_path

        name = (session.model if session is not None else "") or self.model_name
        if not talk_map_path(name, weights_dir(name)).is_file():
            return (f"Model {name} cannot make talking-head videos yet: its talk map is missing "
                    f"(fit it with `{REFIT_COMMAND.format(name=name)}`).")  # fmt: skip
        return ""

    def talk(self, session: Session, text: str = "", voice: str = "en-us", wpm: int = 160,
             audio: str | Path | None = None, paste: bool = True, method: str | None = None,
             head_motion: bool = True, keep_expression: bool = False) -> Path:  # fmt: skip
        """A talking-head video (mp4) of the current face saying ``text`` or lip-syncing ``audio``.

        A face from a photo talks in the photo's own pixels, at its resolution: the whole photo
        (``paste``) or its face. ``method``: how the mouth moves (:data:`pipeline.talk.atnet.METHODS`;
        None: phoneme timings for text, the AT-net for audio); ``head_motion``: a slight sway;
        ``keep_expression``: keep a smile while talking (else the mouth relaxes)."""
        from ..talk.talking_head import load_model_talk_map, talk_video

        if session.latent is None:
            raise UserError("encode a face first (tab 2), or start from a random face")
        text = (text or "").strip()
        if not text and audio is None:
            raise UserError("type something to say, or upload an audio clip")
        model = self.session_model(session)
        talk_map = load_model_talk_map(model.name, model.generator, model.weights_dir)
        photo = (session.photo, session.aligned) if session.photo is not None and session.aligned is not None else None
        result = talk_video(session.tuned or model.generator, session.latent.wplus(model.n_latent), talk_map,
                            session.file("talk.mp4"), text=text or None, audio=audio, voice=voice, wpm=int(wpm),
                            method=method, noise=session.latent.noise, photo=photo, paste=paste, model_name=model.name,
                            head_motion=head_motion, keep_expression=keep_expression, dlib_lock=DLIB_LOCK)  # fmt: skip
        return result.path
