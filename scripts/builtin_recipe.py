"""What scripts/train-builtin.py trains for each built-in model: data, splits, settings, card."""

from __future__ import annotations

from dataclasses import dataclass

COMMON = ("--channels", "16,32,64", "--crop", "128", "--batch-size", "4", "--lr", "1e-3")
# the gland extractor of docs/3d.md's cross-validation, trained 3000 steps
GLAND = ("--dice-weight", "1", "--channels", "8,16,32,64", "--crop", "40", "--batch-size", "2")
GLAND += ("--lr", "5e-4", "--val-every", "250")


@dataclass(frozen=True)
class Recipe:
    """One built-in model: its data, frames, training settings and what its card says.

    A recipe with a ``metric`` makes a feature extractor alone, for optimising with
    that metric; ``val_frames`` choose its checkpoint, ``test_folder`` holds its held-out
    pairs (all of them) and ``score`` are the extra evaluation options (baselines,
    landmarks).
    """

    name: str
    modality: str
    summary: str
    folder: str
    label_options: tuple[str, ...]
    train_frames: str
    test_frames: str
    lam: float
    feature_steps: int
    steps: int
    data: str
    licence: str
    citation: str
    seed: int = 0
    common: tuple[str, ...] = COMMON
    val_frames: str = ""
    test_folder: str = ""
    metric: str = ""
    score: tuple[str, ...] = ("--baseline", "identity", "--baseline", "elastix")

    @property
    def channels(self) -> list[int]:
        """The U-Net encoder channels of both networks."""
        return [int(c) for c in self.common[self.common.index("--channels") + 1].split(",")]


RECIPES = (
    Recipe(
        name="em-2d",
        modality="serial-section EM",
        summary="consecutive sections of serial-section electron microscopy (membranes)",
        folder="isbi2012_em",
        label_options=(),
        train_frames="0:25",
        test_frames="25:30",
        lam=1.0,
        feature_steps=800,
        steps=3000,
        data=(
            "ISBI 2012 EM segmentation challenge, training volume: 30 consecutive ssTEM "
            "sections (512 × 512, 8-bit) of the Drosophila first instar larva ventral nerve "
            "cord, 4 × 4 × 50 nm voxels; labels: membrane and cell interior"
        ),
        licence=(
            "The images and labels were published for research use with citation of the "
            "challenge (copied from zhixuhao/unet, whose MIT licence covers its code, not the "
            "images). The weights are derived from them: cite the works below when you use "
            "this model, and check that your use is research use."
        ),
        citation=(
            "Arganda-Carreras I. et al., Crowdsourcing the creation of image segmentation "
            "algorithms for connectomics, Front. Neuroanat. 9:142 (2015); Cardona A. et al., "
            "An integrated micro- and macroarchitectural analysis of the Drosophila brain by "
            "computer-assisted serial section electron microscopy, PLoS Biol. 8(10) (2010)"
        ),
    ),
    Recipe(
        name="phase-contrast-2d",
        modality="phase-contrast time-lapse",
        summary="consecutive frames of phase-contrast time-lapse microscopy of cells",
        folder="t98g_phase",
        label_options=("--labels", "foreground"),
        train_frames="0:20",
        test_frames="20:24",
        lam=1.0,
        feature_steps=1500,
        steps=3000,
        data=(
            "T98G glioblastoma cells, Zernike phase contrast, 10× objective, 0.87 µm per "
            "pixel, one frame every 10.2 min: 24 frames of 1022 × 1024 pixels (16-bit) from "
            "oist/Usiigaci; labels: cell foreground (Mask R-CNN and tracker output, not "
            "manual)"
        ),
        licence="MIT (oist/Usiigaci, © 2018 Okinawa Institute of Science and Technology)",
        citation=(
            "Tsai H.-F., Gajda J., Sloan T. F. W., Rares A., Shen A. Q., Usiigaci: Instance-aware "
            "cell tracking in stain-free phase contrast microscopy enabled by machine learning, "
            "SoftwareX 9:230-237 (2019)"
        ),
    ),
    Recipe(
        name="prostate-mr-us-3d",
        modality="prostate MR and transrectal ultrasound",
        summary="MR onto transrectal ultrasound volumes of the prostate (the gland)",
        folder="prostate_mr_us_3d/train",
        label_options=("--labels", "foreground"),
        train_frames="0:22",
        val_frames="22:25",
        test_frames="all",
        test_folder="prostate_mr_us_3d/test",
        lam=0.0,
        feature_steps=3000,
        steps=0,
        metric="deepsim-seg",
        common=GLAND,
        score=("--baseline", "identity", "--baseline", "elastix-mi", "--landmarks", "2,3"),
        data=(
            "27 paired prostate volumes from the DeepReg demos (DeepRegNet/DeepReg; where the "
            "images come from is not documented there): MR (64 × 64 × 60) and transrectal "
            "ultrasound (44 × 59 × 41), 8-bit, 0.4 mm voxels in their headers, with three "
            "masks in both modalities (the gland and two small landmarks); 25 training and 2 "
            "test cases"
        ),
        licence="Apache-2.0 (DeepRegNet/DeepReg)",
        citation=(
            "Fu Y. et al., DeepReg: a deep learning toolkit for medical image registration, "
            "Journal of Open Source Software 5(55):2566 (2020)"
        ),
    ),
)
