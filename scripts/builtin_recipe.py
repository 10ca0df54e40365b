"""What scripts/train-builtin.py trains for each built-in model: data, splits, settings, card."""

from __future__ import annotations

from dataclasses import dataclass

COMMON = ("--channels", "16,32,64", "--crop", "128", "--batch-size", "4", "--lr", "1e-3")


@dataclass(frozen=True)
class Recipe:
    """One built-in model: its data, frames, training settings and what its card says."""

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
)
