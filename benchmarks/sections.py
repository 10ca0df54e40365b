"""The sections of ``docs/benchmarks.md``: each benchmark's record as text and target rows."""

from __future__ import annotations

from typing import Any

from benchmarks import (
    bench_memory3d,
    bench_ncc,
    bench_registration,
    bench_scaling,
    bench_series,
    bench_train_path,
    bench_train_step,
)
from benchmarks.common import table

GIB = 1024.0


def verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def loads(record: dict[str, Any]) -> str:
    extra = record.get("before", []) + ([record["full_size"]] if "full_size" in record else [])
    values = [r["load"] for r in record["rows"] + extra if "load" in r]
    return f"{min(values):.1f}–{max(values):.1f}" if values else "–"


def ncc(record: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    rows = record["rows"]
    ours = [r for r in rows if r["implementation"] == "ours"]
    values = record["values"]
    raw = record["raw_3d"]
    worst = max(v["rel_diff_eps0"] for v in values.values())
    voxel = max(v["max_abs_diff_eps0"] for v in values.values())
    value_rows = [{"case": case, **v} for case, v in values.items()]
    value_columns = [
        ("case", "case"),
        ("monai_cc", "MONAI mean cc"),
        ("ours_cc_eps0", "ours, eps = 0"),
        ("rel_diff_eps0", "relative difference"),
        ("max_abs_diff_eps0", "largest difference of one voxel's cc"),
        ("ours_cc_default", "ours, eps = 1e-5 (default)"),
        ("rel_diff_default", "relative difference"),
    ]
    speedups = ", ".join(f"{r['speedup_vs_monai']:.1f}× ({r['case']})" for r in ours)
    text = f"""## 1. Local NCC against MONAI

{bench_ncc.__doc__.split(chr(10), 1)[1].strip()}

Forward and backward pass (the gradient of the warped image, as in training), median of
the repeats after one warm-up:

{table(rows, bench_ncc.COLUMNS)}

Values on the same inputs (mean of the cc map; relative difference to MONAI's):

{table(value_rows, value_columns)}

With ``eps = 0`` both compute the same formula: the means agree to {worst:.1e} relative
(target 1e-4) and single voxels' cc to {voxel:.1e}. Our default ``eps = 1e-5`` changes
the mean by the relative amounts in the last column: it damps windows whose local
variances are tiny, which the 3D pair has around the brain's edge.

On the raw brain volumes (flat zero background, no noise added) MONAI's float32 cc map
reaches {raw["monai_max_cc"]:.3g} (a squared correlation cannot exceed 1) and its mean
is {raw["monai_mean_cc"]:.3g}, where ours stays at most {raw["ours_max_cc"]:.3g} with mean
{raw["ours_mean_cc"]:.3g}. On a flat window both compute variances and a covariance
that are float32 rounding noise; our ``eps`` (added to the product of the standardised
variances) outweighs that noise, MONAI's ``smooth_dr`` (a floor on each window-sum
variance) lies below it.

**Optimisation** (before/after in the table above): the previous version filtered the
five stacked moments ``I, J, I², J², IJ`` with one grouped convolution per axis and let
autograd differentiate through about thirty operations. Now the window sums are
shifted in-place additions of the padded stack (the grouped convolution with a kernel
of ones is slow on the CPU), and the backward pass is written out
(``metrics.intensity._LocalNCC``): it filters three adjoint moments per image instead
of back-propagating through all five, and skips the fixed image's gradient when it is
not needed. ``tests/core/training/test_fast_paths.py`` checks values and gradients against the
previous version to 1e-10 (float64).
"""
    target = {
        "benchmark": "1. local NCC fwd+bwd vs MONAI",
        "target": "≥ 2× faster, values within 1e-4",
        "measured": f"{speedups}; mean cc within {worst:.1e} relative, voxels {voxel:.1e}",
        "verdict": verdict(all(r["speedup_vs_monai"] >= 2 for r in ours) and worst <= 1e-4),
    }
    return text, [target]


def train_step(record: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    rows = record["rows"]
    before = record["before"]
    deepsim = next(r for r in rows if r["metric"] == "deepsim")
    after = {r["metric"]: r for r in rows}
    pairs = []
    for old in before:
        new = after[old["metric"]]
        pairs.append(
            {
                "metric": old["metric"],
                "before_s": old["step_s"],
                "after_s": new["step_s"],
                "before_mib": old["added_mib"],
                "after_mib": new["added_mib"],
                "saving": 1 - new["added_mib"] / old["added_mib"],
            }
        )
    pair_columns = [
        ("metric", "metric"),
        ("before_s", "s per step, before"),
        ("after_s", "after"),
        ("before_mib", "memory added, before (MiB)"),
        ("after_mib", "after"),
        ("saving", "memory saved (fraction)"),
    ]
    ratio = deepsim["time_vs_ncc"]
    text = f"""## 2. Training step per metric

{bench_train_step.__doc__.split(chr(10), 1)[1].strip()}

{table(rows, bench_train_step.COLUMNS)}

A DeepSim step costs {ratio:.2f}× an NCC step (target ≤ 1.3×). DeepSim already computes
the fixed image's features once per pair and without gradients, and the frozen
extractor needs no weight gradients; its encoder (three stages at 1/2, 1/4 and 1/8
resolution) costs far less than the registration U-Net's full-resolution decoder, which
dominates every step. VGG is the expensive metric: VGG16 up to relu3_3 runs its 64- and
128-channel convolutions at full and half resolution, on three colour channels.

**Optimisation (memory)**: the U-Net's LeakyReLU now works in place. A convolution's
backward pass needs its input, not its output, so the activation can overwrite the
convolution's output and autograd keeps one map per convolution instead of two.
Before/after (same run; "out-of-place" restores the previous activations):

{table(pairs, pair_columns)}
"""
    target = {
        "benchmark": "2. training step, DeepSim vs NCC",
        "target": "DeepSim ≤ 1.3× NCC",
        "measured": f"{ratio:.2f}×",
        "verdict": verdict(ratio <= 1.3),
    }
    return text, [target]


def registration(record: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    rows = record["rows"]
    targets = []
    for row in rows:
        if row["method"] not in ("ours", bench_registration.BF16, bench_registration.SMALL):
            continue
        speed = row["speedup_vs_elastix"]
        if row["dice"] is None:
            measured = f"{speed:.1f}× faster; Dice not measured"
            met = None
        else:
            diff = row["dice_minus_elastix"]
            measured = f"{speed:.1f}× faster, Dice {row['dice']:.3f} ({diff:+.3f} vs elastix)"
            met = speed >= 5 and diff >= 0
        setting = {
            "ours": "",
            bench_registration.BF16: " (bf16 opt-in)",
            bench_registration.SMALL: " (smaller network)",
        }[row["method"]]
        targets.append(
            {
                "benchmark": f"3. registration latency, {row['case']}{setting}",
                "target": "≥ 5× faster than elastix at ≥ its Dice",
                "measured": measured,
                "verdict": "speed only (no trained model)" if met is None else verdict(met),
            }
        )
    by_case: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_case.setdefault(row["case"], {})[row["method"]] = row
    pairs = [(c["ours"], c[bench_registration.BF16]) for c in by_case.values()]
    bf16_dice = max(
        (abs(b["dice"] - a["dice"]) for a, b in pairs if a["dice"] is not None), default=0.0
    )
    small = [c[bench_registration.SMALL] for c in by_case.values() if bench_registration.SMALL in c]
    small_text = (
        "; ".join(
            f"{row['case']}: {row['speedup_vs_elastix']:.1f}× faster than elastix"
            + (
                f", Dice {row['dice']:.3f} ({row['dice_minus_elastix']:+.3f})"
                if row["dice"] is not None
                else ""
            )
            for row in small
        )
        or "not run: no reproduction models"
    )
    ratios = [a["latency_s"] / b["latency_s"] for a, b in pairs]
    low, high = f"{min(ratios):.1f}", f"{max(ratios):.1f}"
    bf16_speed = f"{low} times" if low == high else f"{low} to {high} times"
    text = f"""## 3. Registration latency against elastix

{bench_registration.__doc__.split(chr(10), 1)[1].strip()}

Models: the 2D rows use the DeepSim registration models trained by
`scripts/example-runs.sh` (channels 32,64,128, 2500 steps on 128-pixel crops of
ISBI sections 0-24 and T98G frames 0-19; paths in the table), on the held-out
consecutive test pairs (ISBI 25-29, T98G 20-23), moving = the later frame. There is no
trained 3D model, so the 3D row times an untrained network of the same architecture
(the time does not depend on the weights) and measures no Dice; the 3D pair is the
brain_mri_3d volume against the MNI152 template resampled to its grid.

{table(rows, bench_registration.COLUMNS)}

Why a target is missed, where it is: the network's forward pass costs a fixed amount
of work per voxel (the µs-per-voxel column of the scaling section), whereas elastix's
cost is set by its 4 × 256 iterations on 2048 random samples and hardly grows with the
image. The ratio is therefore best on small 2D images and worst in 3D, where 7 million
voxels pass through 32-channel full-resolution convolutions on two cores. The Dice of
the models depends on their training: they were trained for 2500 steps on 128-pixel
crops on this CPU (the paper trained far longer on a GPU), while elastix optimises each
pair. Latency is a choice of network width: the smaller network
({small_text}) needs a quarter of the multiply-adds; where it keeps
the Dice, it is the setting to use on a CPU. The bf16 opt-in changes the Dice by at
most {bf16_dice:.1e} here and is
{bf16_speed} faster than float32 on this CPU. Timings taken under a load above the
core count (the load column) are
inflated; torch's two OpenMP threads wait for each other whenever one of them is
descheduled. On a GPU the same forward pass
takes a fraction of a second; GPU timings were not measured (no GPU on this machine),
so the GPU target (≥ 100×) is not assessed here.
"""
    return text, targets


def series(record: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    rows = record["rows"]
    best = max(rows, key=lambda r: r["frames_per_s"])
    rates = ", ".join(f"batch {r['batch_size']}: {r['frames_per_s']:.2f} frames/s" for r in rows)
    text = f"""## 4. Time-series throughput

{bench_series.__doc__.split(chr(10), 1)[1].strip()} Model: `{record["model"]}`.

{table(rows, bench_series.COLUMNS)}

`register_series` already ran under `torch.inference_mode` and batched frames; on two
CPU cores the convolutions already use both cores for one frame, so batching does not
raise the throughput ({rates}) and costs memory; it pays off on a GPU, where one frame
does not fill the device. On this CPU `--batch-size 1` is the faster setting.
"""
    target = {
        "benchmark": "4. series throughput (24 × 1022×1024)",
        "target": "(no target: report)",
        "measured": f"{best['frames_per_s']:.2f} frames/s (batch {best['batch_size']})",
        "verdict": "–",
    }
    return text, [target]


def memory3d(record: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    rows = record["rows"]
    full = record["full_size"]
    twin = next(r for r in rows if r["variant"] == full["variant"])
    error = twin["full_size_mib"] / full["peak_rss_mib"] - 1
    by_variant = {r["variant"]: r for r in rows}
    before, default = by_variant["out-of-place"], by_variant["default"]
    text = f"""## 5. 3D training memory

{bench_memory3d.__doc__.split(chr(10), 1)[1].strip()}

{table([*rows, full], bench_memory3d.COLUMNS)}

Extrapolation check ({full["variant"]}): 8 × the memory added at 80×96×112 predicts
{twin["full_size_mib"] / GIB:.2f} GiB at 160×192×224; the full-size step measured
{full["peak_rss_mib"] / GIB:.2f} GiB ({error:+.0%}).

One step at 160×192×224 with channels 64,128,256 needs about
{before["full_size_mib"] / GIB:.1f} GiB of CPU memory with the previous out-of-place
activations, {default["full_size_mib"] / GIB:.1f} GiB with the in-place ones and
{full["peak_rss_mib"] / GIB:.1f} GiB with {full["variant"]} (measured). What autograd
keeps between forward and backward falls from {before["full_size_saved_mib"] / GIB:.1f}
to {full["saved_mib"] / GIB:.1f} GiB. The peak falls less than that: it comes in the
backward pass of the full-resolution decoder stage, which holds its 66-channel input,
two 64-channel maps and their gradients at 6.9 million voxels whatever is checkpointed
(checkpointing recomputes that stage too, at the cost of about one more forward pass).
bf16 autocast works on this CPU (AVX512-BF16) and halves most activations; on the
CPU it is also faster. On the CPU, oneDNN keeps reordered copies of convolution data,
which a GPU does not. GPU memory was not measured (no GPU on this machine), so the 8 GB
GPU target is not assessed; a GPU step needs at least the saved tensors above plus the
full-resolution stage's working set and the CUDA context.
"""
    target = {
        "benchmark": "5. 3D step 160×192×224, channels 64,128,256",
        "target": "trains within 8 GB of GPU memory",
        "measured": (
            f"CPU: {before['full_size_mib'] / GIB:.1f} GiB before, "
            f"{full['peak_rss_mib'] / GIB:.1f} GiB with {full['variant']}; GPU not measured"
        ),
        "verdict": "not assessed (no GPU)",
    }
    return text, [target]


def scaling(record: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    rows = record["rows"]
    plot = bench_scaling.PLOT.name  # beside the page, in docs/
    text = f"""## 6. Scaling with the image size

{bench_scaling.__doc__.split(chr(10), 1)[1].strip()}

![time and memory against voxels, log-log]({plot})

{table(rows, bench_scaling.COLUMNS)}

Time and memory grow linearly with the voxels (slope 1 on the log-log plot) once the
image is large enough to keep both cores busy (about a million voxels); below, fixed
costs dominate, and the memory of the smallest sizes is within the allocator's noise.
The µs-per-voxel column shows the constant. Per voxel, this 3D network needs about 1.8
times the multiply-adds of the 2D one (27-tap instead of 9-tap kernels, but each level
down has 8 instead of 4 times fewer voxels).
"""
    return text, []


def train_path(record: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    rows = bench_train_path.summary(record["rows"])
    by = {(r["code"], r["precision"], r["compile"]): r for r in rows}
    old, fp32, bf16 = (
        by[("before", "fp32", False)],
        by[("after", "fp32", False)],
        by[("after", "bf16", False)],
    )
    compiled = {p: by[("after", p, True)] for p in ("fp32", "bf16")}
    dice = {r["precision"]: r for r in record["dice"]}
    gap = abs(dice["bf16"]["dice"] - dice["fp32"]["dice"]) if len(dice) == 2 else None
    fp32_ok = fp32["cpu_s"] <= 1.05 * old["cpu_s"]  # wall times drift with the machine's load
    bf16_ok = bf16["cpu_s"] < fp32["cpu_s"] and gap is not None and gap <= 0.005
    text = f"""## 8. Training data path, precision and compile

{bench_train_path.__doc__.split(chr(10), 1)[1].strip()}

Summary (each variant's least disturbed round):

{table(rows, bench_train_path.SUMMARY_COLUMNS)}

Every round:

{table(record["rows"], bench_train_path.COLUMNS)}

Validation Dice after {dice["fp32"]["steps"]} steps (same seed, same batches):

{table(record["dice"], bench_train_path.DICE_COLUMNS)}

The verdicts compare CPU time: with one torch thread it is the step's own work, whereas
the wall times, measured while other jobs kept the load at 3 to 6 on two cores, vary
by a third between rounds of the same variant. On this CPU the data path was never
the bottleneck: the old per-pair crop and affine
took {old["data_fraction"]:.1%} of a step, the batched one {fp32["data_fraction"]:.1%}.
On a GPU, where the step itself takes milliseconds, the old path's
{old["data_fraction"] * old["step_s"] * 1000:.0f} ms of CPU work per batch here (plus a host
sync and a CSV row per step) would have left the GPU waiting; ``benchmarks/gpu.py``
measures the wait there. bf16 autocast is {fp32["cpu_s"] / bf16["cpu_s"]:.2f}× faster
than fp32 here (CPU time) with a validation Dice
{"within " + f"{gap:.1e}" if gap is not None else "not measured"} of fp32's; the default
stays fp32 on CPUs because only CPUs with bfloat16 instructions (AVX512-BF16, AMX) gain:
pass ``--precision bf16`` on those. ``--compile`` costs about
{compiled["fp32"]["first_step_s"]:.0f} s of compilation in the first step and then runs a
step {fp32["cpu_s"] / compiled["fp32"]["cpu_s"]:.2f}× (fp32) and
{bf16["cpu_s"] / compiled["bf16"]["cpu_s"]:.2f}× (bf16) as fast as without it (CPU time):
worth it for runs of more than a few hundred steps, not for short ones.
"""
    targets = [
        {
            "benchmark": "8. training step fp32, batch 4, crop 256, 64,128,256",
            "target": "no slower than before",
            "measured": f"{fp32['cpu_s']:.2f} vs {old['cpu_s']:.2f} CPU s "
            f"({fp32['step_s']:.2f} vs {old['step_s']:.2f} wall s)",
            "verdict": verdict(fp32_ok),
        },
        {
            "benchmark": "8. training step bf16 (same settings)",
            "target": "faster than fp32, Dice within 0.005",
            "measured": f"{fp32['cpu_s'] / bf16['cpu_s']:.2f}× fp32 (CPU s), Dice "
            + (f"{gap:.1e} apart" if gap is not None else "not measured"),
            "verdict": verdict(bf16_ok),
        },
    ]
    return text, targets
