"""The ``deepsim`` command line: a thin layer over the core's public functions.

Errors a user can cause are printed as one sentence and exit with code 2; pass
``--debug`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from src_training import __version__

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


def _cmd_metrics(args: argparse.Namespace) -> int:
    from src_training.metrics import METRICS

    width = max(len(name) for name in METRICS)
    print(f"{'name':<{width}}  {'lambda':>6}  needs       description")
    for spec in METRICS.values():
        needs = []
        if spec.needs_labels:
            needs.append("labels")
        if spec.needs_extractor:
            needs.append("features")
        if spec.needs_weights:
            needs.append("weights")
        print(
            f"{spec.name:<{width}}  {spec.default_lambda:>6g}  {','.join(needs) or '-':<10}  "
            f"{spec.description}"
        )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from src_training.demo import run_demo

    run_demo(steps=args.steps, metric=args.metric, device=args.device, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``deepsim`` command.

    Returns
    -------
    argparse.ArgumentParser
        The parser with one sub-command per task.
    """
    parser = argparse.ArgumentParser(
        prog="deepsim",
        description="Learned deformable image registration with semantic similarity metrics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("metrics", help="list the similarity metrics and their default lambda")
    p.set_defaults(func=_cmd_metrics)

    p = sub.add_parser(
        "demo",
        help="train a small registration model on the built-in noisy cell sample and "
        "report Dice before and after registration",
    )
    p.add_argument("--steps", type=int, default=400, help="training steps (default 400)")
    p.add_argument("--metric", default="ncc", help="similarity metric (default ncc)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_demo)
    return parser


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
    args = parser.parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("deepsim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError) as exc:
        if args.debug:
            raise
        print(f"deepsim: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
