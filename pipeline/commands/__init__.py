"""CLI subcommands: each module defines ``register(sub, groups)``.

``sub`` is the top-level subparsers object, ``groups`` maps a group name
(``train``, ``bench``) to its subparsers. Handlers set ``func`` with
``parser.set_defaults(func=...)`` and raise ``UserError`` for bad input.
"""


def add_precision_arg(p) -> None:
    """``--precision`` of the training commands (see ``pipeline/training/precision.py``)."""
    from ..training.precision import PRECISIONS

    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="arithmetic: bf16 autocast (about three times as fast where the CPU has AMX or AVX512-BF16), "
                        "fp32, or auto (bf16 where it is fast)")  # fmt: skip
