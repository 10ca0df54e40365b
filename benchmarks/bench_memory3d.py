"""3D memory: one training step on the 160x192x224 brain pair, batch 1, and what cuts it.

Variants of the U-Net (``RegistrationNet``) step with the NCC loss:
``out-of-place`` (the LeakyReLU as before), ``default`` (in-place LeakyReLU),
``checkpointing`` (``activation_checkpointing=True``), ``bf16`` (CPU autocast to
bfloat16) and both. Each runs in a fresh process, one step (so the time includes
first-call costs).

Channels 64,128,256 (the paper's and the CLI default). A full-size step of each variant
would take 3 to 5 minutes on this 2-core CPU, too long for the benchmark run, so the
variants run at 80x96x112, exactly half of each side: every feature map has 1/8 of the
voxels, and the memory the step adds is extrapolated to the full size as 8 times the
measured one (plus the process's resident size before the step). The variant that
needs the least memory also runs at the full size, which checks the extrapolation.
``saved_mib`` counts the tensors autograd keeps between forward and backward: a
device-independent floor of the step's memory (it scales exactly with the voxels).
"""

from __future__ import annotations

from benchmarks.common import run_isolated, save, table
from benchmarks.workloads import PAPER_CHANNELS

FULL = (160, 192, 224)
EIGHTH = (80, 96, 112)
VARIANTS = ("out-of-place", "default", "checkpointing", "bf16", "checkpointing+bf16")


def _step(channels: tuple[int, ...], size: tuple[int, ...], variant: str) -> dict:
    result = run_isolated(
        "benchmarks.workloads:training_step",
        metric="ncc",
        ndim=3,
        batch=1,
        channels=list(channels),
        steps=1,
        size=list(size),
        variant=variant,
    )
    scale = 1 if size == FULL else 8
    return {
        "channels": ",".join(map(str, channels)),
        "size": "×".join(map(str, size)),
        "variant": variant,
        **result,
        "full_size_mib": result["peak_rss_mib"] + (scale - 1) * result["added_mib"],
        "full_size_saved_mib": scale * result["saved_mib"],
        "measured_at_full_size": size == FULL,
    }


def run() -> dict:
    rows = [_step(PAPER_CHANNELS, EIGHTH, variant) for variant in VARIANTS]
    best = min(rows, key=lambda row: row["full_size_mib"])
    full = _step(PAPER_CHANNELS, FULL, best["variant"])
    record = save("memory3d", rows, full_size=full)
    print(table([*rows, full], COLUMNS))
    return record


COLUMNS = [
    ("channels", "channels"),
    ("size", "measured at"),
    ("variant", "variant"),
    ("step_s", "s per step"),
    ("added_mib", "added, MiB"),
    ("peak_rss_mib", "peak RSS, MiB"),
    ("saved_mib", "saved for backward, MiB"),
    ("full_size_mib", "peak at 160×192×224, MiB"),
    ("full_size_saved_mib", "saved at 160×192×224, MiB"),
    ("measured_at_full_size", "full size measured"),
    ("load", "load"),
]

if __name__ == "__main__":
    run()
