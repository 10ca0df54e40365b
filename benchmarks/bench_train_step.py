"""Training step time and peak memory per similarity metric at the paper's 2D sizes.

One ``RegistrationTrainer`` step (data crop and augmentation, forward, loss, backward,
Adam update) as ``deepsim train`` runs it: U-Net channels 64,128,256 (the paper's and
the CLI default), batch 4 (the CLI default), random 256x256 crops of ISBI 2012 EM
sections. VGG uses torchvision's VGG16 layout with random weights and DeepSim a
FeatureExtractor with random weights and channels 64,128,256: the cost does not depend
on the weights. Each metric runs in a fresh process (for its peak memory); the first
step is a warm-up, the median of the others is reported. The anchor is the NCC step.
"""

from __future__ import annotations

from benchmarks.common import run_isolated, save, table
from benchmarks.workloads import PAPER_CHANNELS

METRICS = ("mse", "ncc", "nmi", "mind", "vgg", "deepsim")
BATCH = 4
CROP = 256


def _step(metric: str, steps: int, variant: str = "default") -> dict:
    result = run_isolated(
        "benchmarks.workloads:training_step",
        metric=metric,
        ndim=2,
        batch=BATCH,
        channels=list(PAPER_CHANNELS),
        steps=steps,
        crop=CROP,
        variant=variant,
    )
    return {"metric": metric, "variant": variant, **result}


def run(steps: int = 3) -> dict:
    rows = [_step(metric, steps) for metric in METRICS]
    anchor = next(r for r in rows if r["metric"] == "ncc")
    for row in rows:
        row["time_vs_ncc"] = row["step_s"] / anchor["step_s"]
        row["memory_vs_ncc"] = row["added_mib"] / anchor["added_mib"]
    # Before/after of the in-place activations, on the anchor and on DeepSim.
    before = [_step(metric, steps, "out-of-place") for metric in ("ncc", "deepsim")]
    record = save("train_step", rows, before=before, batch=BATCH, crop=CROP)
    print(table(rows + before, COLUMNS))
    return record


COLUMNS = [
    ("metric", "metric"),
    ("variant", "U-Net activations"),
    ("step_s", "s per step (median)"),
    ("time_vs_ncc", "× NCC step"),
    ("added_mib", "memory added by the step, MiB"),
    ("peak_rss_mib", "peak RSS, MiB"),
    ("memory_vs_ncc", "memory × NCC"),
    ("timed_steps", "timed steps"),
    ("load", "load"),
]

if __name__ == "__main__":
    run()
