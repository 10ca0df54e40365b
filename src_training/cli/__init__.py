"""The ``deepsim`` command line: a thin layer over the core's public functions.

Errors a user can cause (a bad option, a missing or damaged file, a shape, too little
memory) are printed as one line, ``deepsim: error: ...``, and exit with code 2; pass
``--debug`` to see the traceback instead. A model file too old to carry a checksum is
used with one line ``deepsim: note: ...``. Ctrl-C during training saves a checkpoint
(resume with ``--resume``) and exits with code 130. docs/errors.md lists the messages.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from src_training.cli.parser import EXIT_USAGE, build_parser

EXIT_INTERRUPTED = 130
OUT_OF_MEMORY_HINT = (
    "crop or downsample the images, lower --batch-size or --crop, or use a device with more memory"
)
OUT_OF_MEMORY_SIGNS = ("out of memory", "can't allocate memory")


@contextmanager
def _notes_on_one_line() -> Iterator[None]:
    """Print the core's notes about unchecked model files as ``deepsim: note: ...``."""
    from src_training.networks.modelio import UncheckedModelWarning

    with warnings.catch_warnings():
        show = warnings.showwarning

        def note(message: Warning | str, category: type[Warning], *args: Any, **kw: Any) -> None:
            if issubclass(category, UncheckedModelWarning):
                print(f"deepsim: note: {message}", file=sys.stderr)
            else:
                show(message, category, *args, **kw)

        warnings.showwarning = note
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``deepsim`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        Exit code: 0 on success, 2 for a usage or input error, 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version and usage errors
        return int(done.code or 0)
    try:
        from src_training.cli import commands  # imported here: `deepsim --help` stays fast

        with _notes_on_one_line():
            commands.HANDLERS[args.handler](args)
        return 0
    except KeyboardInterrupt:
        print("deepsim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError, FloatingPointError, MemoryError, RuntimeError) as exc:
        message = str(exc)
        out_of_memory = isinstance(exc, MemoryError) or any(
            sign in message.lower() for sign in OUT_OF_MEMORY_SIGNS
        )
        if args.debug or (isinstance(exc, RuntimeError) and not out_of_memory):
            raise
        if out_of_memory:
            cause = f" ({message.splitlines()[0]})" if message else ""
            message = f"out of memory{cause}; {OUT_OF_MEMORY_HINT}"
        print(f"deepsim: error: {' '.join(message.splitlines())}", file=sys.stderr)
        return EXIT_USAGE
