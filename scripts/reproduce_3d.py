"""Reproduce the 3D section of docs/reproduction.md: prostate MR → US and brain → MNI.

Stages (each skips work whose outputs exist, so an interrupted run continues):

1. ``prostate``: all 27 MR → ultrasound cases of ``../shared/data/prostate_mr_us_3d``
   in 3 folds of 9 (cases sorted by name, train and test folders together). Per fold a
   gland extractor is trained on the 18 other cases (both modalities, gland foreground,
   the last 3 cases for validation), then the fold's 9 pairs are scored: identity, ANTs
   SyN with Mattes MI, NMI optimised at its default λ and at 20× it (stiff), MIND,
   DeepSim on the extractor's class probabilities (``deepsim-seg``) and on its feature
   maps (``deepsim-maps``); elastix-MI last (about 30 s a pair on one core).
2. ``brain``: the subject of ``brain_mri_3d`` (a FreeSurfer-labelled T1) onto the
   MNI152 2009a template, affine then deformable: identity (centres aligned), elastix
   (affine + B-spline, MI), ANTs SyN (MI) and NCC, NMI and MSE optimised with an affine
   stage, scored by the Dice of grey and white matter (the template's probability maps
   thresholded at 0.5 against the subject's FreeSurfer labels grouped into the two).
3. ``learned`` (fold 0): small 3D registration models (8-16-32 channels, 32³ crops,
   400 steps) trained with NMI, MIND and ``deepsim-seg`` (the fold's extractor) on the
   fold's 15 training cases, scored alone and refined with their own metric.
4. ``longer``: each fold's extractor trained for 3000 steps instead of 1500, scored by
   ``deepsim-seg``: what more training of the extractor buys.
5. ``modality``: one extractor per modality instead (each fold's MR cases and its
   ultrasound cases in an ``images/``/``labels/`` layout of their own, 3000 steps
   each), scored by ``deepsim-seg:US.pt,MR.pt``: one network for both modalities
   against one per modality.
6. ``report``: ``docs/reproduction/3d.md`` from the summaries.

The folders of both layouts (links to the shared data; the subject and the template's
tissue classes written as NIfTI) live under ``--runs``. Usage::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/reproduce_3d.py [--runs runs/3d] [--stage S]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import nibabel
import numpy as np
from reproduction_commands import run  # scripts/reproduction_commands.py, beside this file
from reproduction_plan import ROOT  # scripts/reproduction_plan.py, beside this file

DATA = ROOT.parent / "shared" / "data"
PROSTATE = DATA / "prostate_mr_us_3d"
MNI = DATA / "mni152_2009"
TEMPLATE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
SIDES = ("fixed_images", "fixed_labels", "moving_images", "moving_labels")
FOLDS = 3
EXTRACTOR = ["--labels", "foreground", "--dice-weight", "1", "--channels", "8,16,32,64"]
EXTRACTOR += ["--crop", "40", "--batch-size", "2", "--steps", "1500", "--lr", "5e-4"]
EXTRACTOR += ["--val-every", "250"]
LONGER = ["--steps", "3000"]  # overrides EXTRACTOR's
SCORE = ["--landmarks", "2,3", "--device", "cpu"]
MODEL = ["--channels", "8,16,32", "--crop", "32", "--batch-size", "2", "--steps", "400"]
MODEL += ["--lr", "1e-3", "--val-every", "100", "--device", "cpu"]
# FreeSurfer aseg ids grouped as the template's tissue maps are: grey matter (cortex,
# cerebellar cortex, deep grey nuclei, hippocampus, amygdala) and white matter (cerebral
# and cerebellar white matter, brainstem, ventral DC, corpus callosum, hypointensities)
GREY = (3, 42, 8, 47, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58)
WHITE = (2, 41, 7, 46, 16, 28, 60, 77, 251, 252, 253, 254, 255)
SUBJECT_AXES = (0, 2, 1)  # the subject's array axes in RAS order (checked in the report)


def prostate_folds(runs: Path) -> list[Path]:
    """Link the 27 cases into ``fold<k>/{train,test}`` paired layouts."""
    cases = sorted(
        (path.name, split)
        for split in ("train", "test")
        for path in (PROSTATE / split / "fixed_images").glob("*.nii.gz")
    )
    folds = []
    for k in range(FOLDS):
        fold = runs / f"fold{k}"
        held = set(range(k * len(cases) // FOLDS, (k + 1) * len(cases) // FOLDS))
        for index, (name, split) in enumerate(cases):
            part = "test" if index in held else "train"
            for side in SIDES:
                link = fold / part / side / name
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.is_symlink():
                    link.symlink_to(PROSTATE / split / side / name)
        folds.append(fold)
    return folds


def train_extractor(
    layout: Path, images: str, out: Path, log: Path, extra: list[str] | None = None
) -> Path:
    """Train a gland extractor on a layout's cases, the last 3 for validation, unless done.

    ``images`` is the layout's folder whose files count the cases; ``extra`` options
    follow :data:`EXTRACTOR` (and override it).
    """
    if not out.is_file():
        train = len(list((layout / images).glob("*.nii.gz")))
        frames = ["--frames", f"0:{train - 3}", "--val-frames", f"{train - 3}:{train}"]
        run(["train-features", str(layout), *frames, *EXTRACTOR, *(extra or []),
             "--device", "cpu", "--out", str(out)], log)  # fmt: skip
    return out


def stage_prostate(runs: Path, log: Path) -> None:
    """Train each fold's gland extractor and score its held-out pairs; elastix last."""
    folds = prostate_folds(runs)
    for fold in folds:
        extractor = train_extractor(fold / "train", "fixed_images", fold / "gland.pt", log)
        rows = {
            "base": ["--baseline", "identity", "--baseline", "ants", "--ants-metric", "mi"],
            "nmi": ["--optimise", "nmi", "--optimise", "mind", "--optimise", "ncc"],
            "nmi-stiff": ["--optimise", "nmi", "--lam", "5"],
            "deepsim": [
                "--optimise",
                f"deepsim-seg:{extractor}",
                "--optimise",
                f"deepsim-maps:{extractor}",
            ],
        }
        for name, options in rows.items():
            score(fold, name, options, log)
    for fold in folds:
        score(fold, "elastix", ["--baseline", "elastix-mi"], log)


def stage_longer(runs: Path, log: Path) -> None:
    """Each fold's extractor trained twice as long, scored by deepsim-seg alone."""
    for fold in prostate_folds(runs):
        out = fold / "gland-long.pt"
        extractor = train_extractor(fold / "train", "fixed_images", out, log, LONGER)
        score(fold, "longer", ["--optimise", f"deepsim-seg:{extractor}"], log)


def modality_layout(fold: Path, side: str) -> Path:
    """Link one modality of a fold's training cases into ``images/`` and ``labels/``."""
    kind = {"moving": "mr", "fixed": "us"}[side]
    folder = fold / "modality" / kind
    for name in sorted((fold / "train" / f"{side}_images").glob("*.nii.gz")):
        for part in ("images", "labels"):
            link = folder / part / name.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to((fold / "train" / f"{side}_{part}" / name.name).resolve())
    return folder


def stage_modality(runs: Path, log: Path) -> None:
    """One extractor per modality per fold (3000 steps), scored by deepsim-seg with both."""
    for fold in prostate_folds(runs):
        extractors = {}
        for side in ("fixed", "moving"):
            layout = modality_layout(fold, side)
            out = fold / f"gland-{layout.name}.pt"
            extractors[side] = train_extractor(layout, "images", out, log, LONGER)
        pair = f"deepsim-seg:{extractors['fixed']},{extractors['moving']}"
        score(fold, "modality", ["--optimise", pair], log)


def score(fold: Path, name: str, options: list[str], log: Path) -> None:
    """Evaluate a fold's held-out pairs with the given rows, unless done."""
    out = fold / "eval" / name
    if not (out / "summary.csv").is_file():
        run(["evaluate", str(fold / "test"), *options, *SCORE,
             "--out", str(out), "--overwrite"], log)  # fmt: skip


def stage_learned(runs: Path, log: Path) -> None:
    """Train NMI, MIND and deepsim-seg models on fold 0 and score them, alone and refined."""
    fold = prostate_folds(runs)[0]
    models = []
    for metric in ("nmi", "mind", "deepsim-seg"):
        model = fold / "learned" / f"{metric}.pt"
        model.parent.mkdir(exist_ok=True)
        features = ["--features", str(fold / "gland.pt")] if metric == "deepsim-seg" else []
        if not model.is_file():
            run(["train", str(fold / "train"), "--frames", "0:15", "--val-frames", "15:18",
                 "--metric", metric, *features, *MODEL, "--out", str(model)], log)  # fmt: skip
        models.append(str(model))
    options = ["--models", *models, "--refine", "own"]
    score(fold, "learned", options, log)


def brain_layout(runs: Path) -> Path:
    """Write the subject → template pair as a paired layout of NIfTI files."""
    folder = runs / "brain"
    done = folder / "moving_labels" / "mni.nii.gz"
    if done.is_file():
        return folder
    template = nibabel.load(MNI / TEMPLATE.format("t1"))
    tissue = np.zeros(template.shape, np.uint8)
    for value, kind in ((1, "gm"), (2, "wm")):
        tissue[np.asarray(nibabel.load(MNI / TEMPLATE.format(kind)).dataobj) > 127] = value
    scan = np.load(DATA / "brain_mri_3d" / "test_scan.npz")
    subject = np.transpose(scan["vol"].astype(np.float32), SUBJECT_AXES)
    aseg = np.transpose(scan["seg"], SUBJECT_AXES).astype(np.int64)
    grouped = np.where(np.isin(aseg, GREY), 1, np.where(np.isin(aseg, WHITE), 2, 0))
    one_mm = np.eye(4)
    arrays = {
        "fixed_images": (np.asarray(template.dataobj), template.affine),
        "fixed_labels": (tissue, template.affine),
        "moving_images": (subject, one_mm),
        "moving_labels": (grouped.astype(np.uint8), one_mm),
    }
    for side, (array, affine) in arrays.items():
        (folder / side).mkdir(parents=True, exist_ok=True)
        nibabel.save(nibabel.Nifti1Image(array, affine), folder / side / "mni.nii.gz")
    return folder


def stage_brain(runs: Path, log: Path) -> None:
    """Score the subject → template rows."""
    folder = brain_layout(runs)
    rows = {
        "base": ["--baseline", "identity", "--baseline", "elastix-mi"],
        "ants": ["--baseline", "ants", "--ants-metric", "mi"],
        "opt": ["--optimise", "ncc", "--optimise", "nmi", "--optimise", "mse", "--affine"],
    }
    for name, options in rows.items():
        out = runs / "brain-eval" / name
        if not (out / "summary.csv").is_file():
            run(["evaluate", str(folder), *options, "--device", "cpu",
                 "--out", str(out), "--overwrite"], log)  # fmt: skip


def rows_of(paths: list[Path]) -> dict[str, list[dict[str, str]]]:
    """Every pair row of the given ``pairs.csv`` files, by method (and variant folder)."""
    rows: dict[str, list[dict[str, str]]] = {}
    for path in paths:
        variant = {"longer": " (extractor 3000 steps)", "nmi-stiff": " (λ 5)"}
        variant |= {"modality": " (an extractor per modality, 3000 steps)"}
        variant |= {"learned": " (learned model, fold 0)"}
        name = variant.get(path.parent.name, "")
        with path.open() as handle:
            for row in csv.DictReader(handle):
                rows.setdefault(row["model"] + name, []).append(row)
    return rows


def mean(rows: list[dict[str, str]], key: str) -> float:
    """Mean of a column over the rows that have a value."""
    values = [float(r[key]) for r in rows if r.get(key) not in (None, "", "nan")]
    return float(np.mean(values)) if values else float("nan")


def stage_report(runs: Path, out: Path) -> None:
    """Write the 3D tables (markdown) from the evaluation folders."""
    lines = ["# 3D reproduction: tables written by scripts/reproduce_3d.py", ""]
    prostate = rows_of(sorted(runs.glob("fold*/eval/*/pairs.csv")))
    if prostate:
        lines += ["## Prostate MR → US, 3-fold cross-validation (held-out pairs of all folds)",
                  "", "| row | pairs | failed | gland Dice | better than identity | TRE (mm) | "
                  "folding % | s/pair |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        start = {r["moving_name"]: float(r["dice_1"]) for r in prostate["identity"]}
        for name, rows in prostate.items():
            done = [r for r in rows if r["dice_1"] not in ("", "nan")]
            better = sum(float(r["dice_1"]) > start[r["moving_name"]] for r in done)
            lines.append(
                f"| {name} | {len(rows)} | {len(rows) - len(done)} | {mean(rows, 'dice_1'):.3f} | "
                f"{better}/{len(done)} | "
                f"{mean(rows, 'tre'):.2f} | {mean(rows, 'folding_percent'):.2f} | "
                f"{mean(rows, 'seconds'):.1f} |"
            )
    brain = rows_of(sorted(runs.glob("brain-eval/*/pairs.csv")))
    if brain:
        lines += ["", "## Brain → MNI152 2009a (one subject)", "",
                  "| row | grey matter Dice | white matter Dice | folding % | s |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for name, rows in brain.items():
            lines.append(
                f"| {name} | {mean(rows, 'dice_1'):.3f} | {mean(rows, 'dice_2'):.3f} | "
                f"{mean(rows, 'folding_percent'):.2f} | {mean(rows, 'seconds'):.1f} |"
            )
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def main() -> None:
    """Run the chosen stages."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "3d")
    stages = ("prostate", "brain", "learned", "longer", "modality", "report", "all")
    parser.add_argument("--stage", choices=stages, default="all")
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    log = args.runs / "commands.log"
    if args.stage in ("prostate", "all"):
        stage_prostate(args.runs, log)
    if args.stage in ("brain", "all"):
        stage_brain(args.runs, log)
    if args.stage in ("learned", "all"):
        stage_learned(args.runs, log)
    if args.stage in ("longer", "all"):
        stage_longer(args.runs, log)
    if args.stage in ("modality", "all"):
        stage_modality(args.runs, log)
    if args.stage in ("report", "all"):
        stage_report(args.runs, ROOT / "docs" / "reproduction" / "3d.md")


if __name__ == "__main__":
    main()
