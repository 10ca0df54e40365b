"""The training data path, precision and ``torch.compile`` on this CPU, before and after.

One ``RegistrationTrainer`` step as ``deepsim train`` runs it: NCC, U-Net channels
64,128,256, batch 4, random 256x256 crops of ISBI 2012 EM sections 0-24. "Before" is
the code of commit 1ab904a (``BEFORE``: the per-pair CPU crop and augmentation, a host sync
and a log row per step; bf16 by wrapping the run in CPU autocast), exported with
``git archive`` and imported in place of this checkout's ``src_training`` (its bf16
run sits in one autocast region, which keeps the first step's bfloat16 copies of the
weights for the whole run: it skips the weights' casts, so it is, if anything, a little
fast); "after" is
this checkout (batches cropped and augmented on the training device, losses read
every ``log_every`` steps, ``--precision``, ``--compile``). Every variant runs in a
fresh process, every variant once per round, the rounds one after the other in the
same benchmark run; the first step is a warm-up (and, compiled, the compilation), the
median of the others is reported, as wall time and as the CPU time of the process
(``time.process_time``; with one torch thread it is the work itself, which other jobs
on a shared machine lengthen far less than the wall time). The summary keeps each
variant's least disturbed round. "Data" is the share of the
timed steps spent preparing the batch (``Trainer._batch``; on the CPU every operation
is synchronous, so that is the time the step waits for its data).

The Dice check trains the same NCC model (same seed, same batches) in fp32 and bf16
for 150 steps (``DICE_STEPS``) on 128-pixel crops (the paper's learning rate, 1e-4, and
λ = 1/32, NCC's λ on ISBI in docs/reproduction.md) and scores both on the consecutive
pairs of ISBI sections 25-29, the benchmark's held-out sections. A run this short
stays near the identity's Dice (a learning rate of 1e-3 moved both below it within 150
steps): it checks that bf16 trains the same model, not how good the model is.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from benchmarks.common import (
    DATA,
    RESULTS,
    ROOT,
    load,
    run_isolated,
    save,
    start_peak,
    table,
)

BEFORE = "1ab904a"  # the last commit before the device-side data path (issue 14)
BATCH, CROP, CHANNELS = 4, 256, (64, 128, 256)
DICE_STEPS, DICE_CROP, DICE_LR, DICE_LAM = 150, 128, 1e-4, 0.03125
VARIANTS = (  # (code, precision, compile)
    ("before", "fp32", False),
    ("before", "bf16", False),
    ("after", "fp32", False),
    ("after", "bf16", False),
    ("after", "fp32", True),
    ("after", "bf16", True),
)


def training_steps(
    source: str | None,
    precision: str,
    compile: bool,
    steps: int,
    dice: bool = False,
    crop: int = CROP,
    lr: float = 1e-4,
    lam: float = 0.5,
    metric: str = "ncc",
) -> dict:
    """Time ``steps`` training steps (the first is a warm-up) of the code in ``source``.

    ``source``: a folder holding another version's ``src_training`` (imported instead
    of this checkout's), or None for this checkout. With ``dice``, also validate on
    ISBI 25-29 after the last step.
    """
    if source is not None:
        sys.path.insert(0, source)
    if compile:  # compile from scratch: an empty cache, not an earlier run's kernels
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    import torch

    from src_training.data.datasets import load_dataset
    from src_training.metrics import build_metric
    from src_training.networks.models import RegistrationNet
    from src_training.training.trainer import TrainConfig
    from src_training.training.trainers import RegistrationTrainer

    data = load_dataset(DATA / "isbi2012_em")
    options = {"precision": precision, "compile": compile} if source is None else {}
    config = TrainConfig(
        steps=steps,
        batch_size=BATCH,
        crop=crop,
        lr=lr,
        val_every=steps,
        checkpoint_every=10**9,
        **options,
    )
    torch.manual_seed(0)
    trainer = RegistrationTrainer(
        RegistrationNet(2, channels=CHANNELS),
        config,
        data.subset(range(25)),
        metric=build_metric(metric),
        lam=lam,
        val=data.subset(range(25, 30)) if dice else None,
    )
    batch = trainer._batch
    data_seconds: list[float] = []

    def timed_batch(*args: object, **kwargs: object) -> object:
        begin = time.perf_counter()
        out = batch(*args, **kwargs)
        data_seconds.append(time.perf_counter() - begin)
        return out

    trainer._batch = timed_batch  # type: ignore[method-assign]
    wrap = source is not None and precision == "bf16"  # the code before had no --precision
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if wrap else nullcontext()
    rss_before = start_peak()
    ends, cpu, scores = [], [time.process_time()], {}
    with autocast:
        for event in trainer.run():
            if hasattr(event, "scores"):
                scores = event.scores
            else:
                ends.append(event.seconds)
                cpu.append(time.process_time())
    if compile:
        shutil.rmtree(os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)
    times = [b - a for a, b in itertools.pairwise([0.0, *ends])]
    timed = times[1:] or times
    cpu_times = [b - a for a, b in itertools.pairwise(cpu)][1:]
    return {
        "step_s": statistics.median(timed),
        "cpu_s": statistics.median(cpu_times or [float("nan")]),
        "first_step_s": times[0],
        "data_fraction": sum(data_seconds[1:]) / sum(timed),
        "timed_steps": len(timed),
        "dice": scores.get("dice"),
        "identity_dice": _identity_dice(data.subset(range(25, 30)).labels) if dice else None,
        "code_path": str(Path(sys.modules[RegistrationTrainer.__module__].__file__).parents[2]),
        "load": load(),
        "rss_before_mib": rss_before,
    }


def _identity_dice(labels: np.ndarray) -> float:
    """Mean Dice of the consecutive pairs before registration."""
    from src_training.metrics.dice import mean_dice

    return float(np.mean([mean_dice(labels[t + 1], labels[t]) for t in range(len(labels) - 1)]))


def _export(revision: str, folder: Path) -> str:
    """Write ``src_training`` of ``revision`` into ``folder`` and return the folder."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src_training"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return str(folder)


def run(steps: int = 5, rounds: int = 2, dice: bool = True) -> dict:
    """Time every variant ``rounds`` times, interleaved, then (with ``dice``) the Dice check.

    Without ``dice`` the Dice rows of the last record are kept.
    """
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        before = _export(BEFORE, Path(folder))
        for round_ in range(rounds):
            for code, precision, compile in VARIANTS:
                result = run_isolated(
                    "benchmarks.bench_train_path:training_steps",
                    timeout=3600,
                    source=before if code == "before" else None,
                    precision=precision,
                    compile=compile,
                    steps=steps,
                )
                row = {"code": code, "precision": precision, "compile": compile, **result}
                rows.append({"round": round_ + 1, **row})
                print(table(rows[-1:], COLUMNS), flush=True)
    dice_rows = []
    if dice:
        for precision in ("fp32", "bf16"):
            result = run_isolated(
                "benchmarks.bench_train_path:training_steps",
                timeout=3600,
                source=None,
                precision=precision,
                compile=False,
                steps=DICE_STEPS,
                dice=True,
                crop=DICE_CROP,
                lr=DICE_LR,
                lam=DICE_LAM,
            )
            row = {"precision": precision, "steps": DICE_STEPS, "crop": DICE_CROP, "lr": DICE_LR}
            row["lam"] = DICE_LAM
            dice_rows.append({**row, **result})
    elif (RESULTS / "train_path.json").is_file():
        dice_rows = json.loads((RESULTS / "train_path.json").read_text())["dice"]
    record = save("train_path", rows, dice=dice_rows, before_commit=BEFORE, batch=BATCH, crop=CROP)
    print(table(summary(rows), SUMMARY_COLUMNS))
    print(table(dice_rows, DICE_COLUMNS))
    return record


def summary(rows: list[dict]) -> list[dict]:
    """One row per variant: the least of its rounds' medians (the least disturbed round).

    The first step keeps its longest time: with ``--compile`` the compilation.
    """
    out: dict[tuple, dict] = {}
    for row in rows:
        key = (row["code"], row["precision"], row["compile"])
        best = out.setdefault(key, dict(row))
        for name in ("step_s", "cpu_s", "data_fraction", "added_mib"):
            best[name] = min(best[name], row[name])
        best["first_step_s"] = max(best["first_step_s"], row["first_step_s"])
        best["load"] = max(best["load"], row["load"])
    result = list(out.values())
    for row in result:
        row["speed_vs_before"] = result[0]["step_s"] / row["step_s"]
        row["cpu_speed_vs_before"] = result[0]["cpu_s"] / row["cpu_s"]
    return result


COLUMNS = [
    ("round", "round"),
    ("code", "code"),
    ("precision", "precision"),
    ("compile", "compiled"),
    ("step_s", "wall s per step (median)"),
    ("cpu_s", "CPU s per step (median)"),
    ("first_step_s", "first step s"),
    ("data_fraction", "data (fraction of the step)"),
    ("added_mib", "memory added, MiB"),
    ("load", "load"),
]
SUMMARY_COLUMNS = [
    ("code", "code"),
    ("precision", "precision"),
    ("compile", "compiled"),
    ("step_s", "wall s per step"),
    ("speed_vs_before", "× before fp32 (wall)"),
    ("first_step_s", "first step s"),
    ("cpu_s", "CPU s per step"),
    ("cpu_speed_vs_before", "× before fp32 (CPU)"),
    ("data_fraction", "data (fraction of the step)"),
    ("added_mib", "memory added, MiB"),
    ("load", "highest load"),
]
DICE_COLUMNS = [
    ("precision", "precision"),
    ("steps", "steps"),
    ("crop", "crop"),
    ("lr", "learning rate"),
    ("lam", "λ"),
    ("dice", "validation Dice (ISBI 25-29)"),
    ("identity_dice", "identity Dice"),
    ("step_s", "wall s per step (median)"),
    ("cpu_s", "CPU s per step (median)"),
    ("load", "load"),
]

if __name__ == "__main__":
    run()
