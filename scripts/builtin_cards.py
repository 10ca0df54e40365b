"""The model cards of the built-in models, written by scripts/train-builtin.py."""

from __future__ import annotations

from typing import Any

from builtin_recipe import Recipe  # scripts/builtin_recipe.py, beside this file

from src_training.data.profile import TOLERANCE

COMMAND = ".venv/bin/python scripts/train-builtin.py"
METHODS = (("identity", "identity"), ("elastix", "elastix (B-spline, default map)"))


def _row(label: str, scores: dict[str, float]) -> str:
    return (
        f"| {label} | {scores['dice']:.3f} ± {scores['dice_sd']:.3f} | "
        f"{scores['folding_percent']:.2f} | {scores['seconds_per_pair']:.2f} |"
    )


def heldout_table(name: str, heldout: dict[str, Any]) -> list[str]:
    """Return the Markdown table of the held-out scores: identity, elastix, the model."""
    lines = ["| method | Dice ± sd | folding % | s/pair |", "|---|---|---|---|"]
    for key, label in METHODS:
        if key in heldout:
            lines.append(_row(label, heldout[key]))
    lines.append(_row(f"**{name}**", heldout["model"]))
    return lines


def _files_table(files: dict[str, dict[str, Any]]) -> list[str]:
    return [
        "| part | file | bytes | SHA-256 |",
        "|---|---|---|---|",
        *(
            f"| {part} | `{f['file']}` | {f['bytes']} | `{f['sha256']}` |"
            for part, f in files.items()
        ),
        "",
    ]


def _provenance(recipe: Recipe) -> list[str]:
    return [
        f"- {recipe.data}.",
        f"- Licence: {recipe.licence.rstrip('.')}.",
        f"- Cite: {recipe.citation.rstrip('.')}.",
    ]


def card(recipe: Recipe, entry: dict[str, Any], training: dict[str, Any]) -> str:
    """Return the model card of one built-in model (Markdown).

    Parameters
    ----------
    recipe : Recipe
        What was trained on which data.
    entry : dict
        Its registry entry (files, held-out scores).
    training : dict
        ``profile`` (the intensity profile of its training images),
        ``features_seconds``, ``seconds``, ``threads``, ``float16_change``.
    """
    profile = training["profile"]
    heldout = entry["heldout"]
    files = entry["files"]
    raw = profile["raw_percentiles"]
    size = sum(f["bytes"] for f in files.values()) / 1e6
    channels = ",".join(map(str, recipe.channels))
    lines = [
        f"# Built-in model `{recipe.name}`",
        "",
        f"Registers {recipe.summary}: a DeepSim registration model (a 2D U-Net, channels "
        f"{channels}, predicting a displacement field) and the segmentation feature "
        "extractor it was trained with. Use the name wherever a model file goes:",
        "",
        "```bash",
        f"deepsim register --model {recipe.name} FIXED MOVING --out result/",
        f"deepsim train DATA --metric deepsim --features {recipe.name} --init {recipe.name} "
        "--steps 300 --out tuned.pt",
        "```",
        "",
        "## Data",
        "",
        *_provenance(recipe),
        f"- Splits: features and registration trained on frames {recipe.train_frames} of "
        f"`{recipe.folder}` (pairs of frames up to 2 apart, random affine augmentation); "
        f"held out: frames {recipe.test_frames}, whose {heldout['pairs']} consecutive pairs "
        "are scored below. No validation frames: the last step's weights are the model.",
        f"- Training intensities (the guard rail's reference): {', '.join(profile['dtypes'])}; "
        f"raw percentiles 1/50/99 from {raw['1'][0]:g}-{raw['1'][1]:g}, "
        f"{raw['50'][0]:g}-{raw['50'][1]:g}, {raw['99'][0]:g}-{raw['99'][1]:g}; after the "
        f"per-image normalisation, quantiles {profile['quantiles']} between {profile['low']} "
        f"and {profile['high']}. An image whose normalised quantiles lie more than {TOLERANCE:g} "
        "outside these ranges gets a warning.",
        "",
        "## Training",
        "",
        f"- Feature extractor: segmentation{' of the foreground' if recipe.label_options else ''}"
        f", {recipe.feature_steps} steps; registration: metric deepsim, λ = {recipe.lam:g} "
        f"(diffusion regulariser), {recipe.steps} steps; both with "
        f"`{' '.join(recipe.common)}`, seed {recipe.seed}, on the CPU with "
        f"{training['threads']} thread(s) per run.",
        f"- Time on a shared 2-core CPU: extractor {training['features_seconds'] / 60:.0f} min, "
        f"registration {training['seconds'] / 60:.0f} min.",
        f"- Stored with 16-bit weights (restored to float32 on load; {size:.2f} MB for both "
        f"files); the largest change of a held-out displacement against the 32-bit weights is "
        f"{training['float16_change']:.3f} px.",
        f"- Regenerate: `{COMMAND} --only {recipe.name}`; on the CPU with the same number "
        "of threads it gives the same weights (the files differ in their creation time, so "
        "the registry's SHA-256 changes with them).",
        "",
        f"## Held-out pairs ({heldout['data']})",
        "",
        *heldout_table(recipe.name, heldout),
        "",
        "Dice: mean over the label classes present, background included, per pair; ± the "
        "standard deviation over pairs. Folding: share of pixels with det J ≤ 0. Seconds per "
        f"pair with {training['eval_threads']} threads on this CPU, shared with other jobs "
        "(`deepsim evaluate --baseline identity --baseline elastix`).",
        "",
        "## Files",
        "",
        *_files_table(files),
    ]
    return "\n".join(lines)


def extractor_card(recipe: Recipe, entry: dict[str, Any], training: dict[str, Any]) -> str:
    """Return the card of a built-in feature extractor alone (Markdown).

    Parameters
    ----------
    recipe : Recipe
        What was trained on which data (``metric`` set).
    entry : dict
        Its registry entry (files, held-out scores: gland Dice and TRE).
    training : dict
        ``features_seconds``, ``threads``, ``eval_threads``, ``float16_change``,
        ``best_step``, ``best_dice``.
    """
    name, metric, heldout = recipe.name, recipe.metric, entry["heldout"]
    rows = [("identity", "identity (centres aligned)"), ("elastix-mi", "elastix (MI)")]
    rows.append(("model", f"**optimised with `{metric}:{name}`**"))
    table = ["| method | gland Dice ± sd | TRE (mm) | folding % | s/pair |"]
    table.append("|---|---|---|---|---|")
    for key, label in rows:
        if key in heldout:
            row = heldout[key]
            table.append(
                f"| {label} | {row['dice']:.3f} ± {row['dice_sd']:.3f} | {row['tre_mm']:.2f} | "
                f"{row['folding_percent']:.2f} | {row['seconds_per_pair']:.1f} |"
            )
    channels = ",".join(map(str, recipe.channels))
    lines = [
        f"# Built-in feature extractor `{name}`",
        "",
        f"A 3D segmentation network (U-Net, channels {channels}) that finds the prostate gland "
        f"in MR and in transrectal ultrasound alike, made for registering {recipe.summary} with "
        f"the metric `{metric}`: the mean squared difference of the network's gland "
        "probabilities in both volumes, which, unlike their intensities, the two modalities "
        "share. It has no registration model (none trained here beats the identity); it "
        "drives a per-pair optimisation from the identity:",
        "",
        "```bash",
        f"deepsim register US.nii.gz MR.nii.gz --optimise --metric {metric}:{name} --out result/",
        "```",
        "",
        f"In napari: Register dock, method optimise, metric {metric}, extractor `{name}`.",
        "",
        "## Data",
        "",
        *_provenance(recipe),
        f"- Splits: trained on training cases {recipe.train_frames} (both modalities, the gland "
        f"as foreground), checkpoint chosen by the gland Dice of cases {recipe.val_frames} "
        f"(best {training['best_dice']:.3f} at step {training['best_step']}); held out: the "
        f"{heldout['pairs']} cases of `{recipe.test_folder}`, scored below.",
        "- Cross-validated over all 27 cases (an extractor per fold trained as this one, on "
        "15 cases): gland Dice 0.665 against the identity's 0.614 and landmark TRE 2.25 "
        "against 2.90 mm ([docs/3d.md](../../docs/3d.md)).",
        "",
        "## Training",
        "",
        f"- `deepsim train-features` with `{' '.join(recipe.label_options)} --steps "
        f"{recipe.feature_steps} {' '.join(recipe.common)}`, seed {recipe.seed}, on the CPU "
        f"with {training['threads']} thread(s): {training['features_seconds'] / 60:.0f} min on "
        "a shared 2-core CPU.",
        f"- Stored with 16-bit weights (restored to float32 on load); the largest change of a "
        f"held-out volume's gland probability against the 32-bit weights is "
        f"{training['float16_change']:.4f}.",
        f"- Regenerate: `{COMMAND} --only {name}`.",
        "",
        f"## Held-out pairs ({heldout['data']})",
        "",
        *table,
        "",
        "Gland Dice per pair (class 1 of the masks), ± the standard deviation over pairs; TRE: "
        "mean distance in mm between the landmark centroids after registration; folding: "
        f"share of voxels with det J ≤ 0; seconds per pair with {training['eval_threads']} "
        "threads on this CPU (`deepsim evaluate --baseline identity --baseline elastix-mi "
        "--landmarks 2,3`).",
        "",
        "## Files",
        "",
        *_files_table(entry["files"]),
    ]
    return "\n".join(lines)
