"""Errors a user can act on.

Every step raises :class:`UserError` with a one-line reason for bad input or a missing
model; the CLI prints it and exits non-zero, the app shows it as a ``gr.Error``.
"""


class UserError(Exception):
    """A problem with the user's input or setup, described in one line."""
