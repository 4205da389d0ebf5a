"""CLI subcommands: each module defines ``register(sub, groups)``.

``sub`` is the top-level subparsers object, ``groups`` maps a group name
(``train``, ``bench``) to its subparsers. Handlers set ``func`` with
``parser.set_defaults(func=...)`` and raise ``UserError`` for bad input.
"""
