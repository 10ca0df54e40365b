"""Running ``deepsim`` commands for the scripts: echoed, logged, resumable.

:func:`run` runs one command and appends its output to a log, which
:func:`command_seconds` totals; :func:`finished` tells whether a training run reached its
last step, so an interrupted script redoes only what is missing.
"""

from __future__ import annotations

import csv
import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from reproduction_plan import COMMON, DEEPSIM, ROOT  # scripts/reproduction_plan.py


def run(args: list[str], log: Path) -> None:
    """Run one deepsim command, echo it, append its output to the log; stop on failure.

    The output grows in ``LOG.PID.part`` while the command runs (follow it there) and
    joins the log as one block, so two invocations (``--split``) can share the log.
    """
    command = [*DEEPSIM, *args]
    shown = "deepsim " + shlex.join(args)
    print(f"$ {shown}", flush=True)
    start = time.perf_counter()
    part = log.with_name(f"{log.name}.{os.getpid()}.part")
    with part.open("w") as stream:
        stream.write(f"$ {shown}\n")
        stream.flush()
        result = subprocess.run(command, cwd=ROOT, stdout=stream, stderr=subprocess.STDOUT)
        stream.write(f"# {time.perf_counter() - start:.1f} s, exit {result.returncode}\n")
    with log.open("a") as stream:
        stream.write(part.read_text())
    part.unlink()
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {shown}; see {log}")


def run_training(
    args: list[str],
    steps: int,
    out: Path,
    device: list[str],
    log: Path,
    extra: Sequence[str] = (),
) -> None:
    """Run a training command with the common settings; ``extra`` overrides them."""
    command = [*args, "--steps", str(steps), *COMMON, *extra, *device]
    run([*command, "--out", str(out), "--overwrite"], log)


def finished(model: Path, steps: int) -> bool:
    """Whether a training run reached its last step (an interrupted one is redone)."""
    curves = model.with_suffix(".csv")
    if not (model.is_file() and curves.is_file()):
        return False
    with curves.open() as handle:
        return any(int(r["step"]) >= steps for r in csv.DictReader(handle))


def best_val_dice(csv_path: Path) -> float:
    """Return the best validation Dice in a training CSV."""
    with csv_path.open() as handle:
        values = [float(r["val_dice"]) for r in csv.DictReader(handle) if r["val_dice"]]
    return max(values)


def command_seconds(log: Path) -> dict[str, float]:
    """Seconds per command kind (train-features, train, evaluate, ...) from a :func:`run` log."""
    totals: dict[str, float] = {}
    kind = ""
    for line in log.read_text().splitlines():
        if line.startswith("$ deepsim "):
            kind = line.split()[2]
        elif line.startswith("# ") and " s, exit" in line:
            totals[kind] = totals.get(kind, 0.0) + float(line.split()[1])
    return totals
