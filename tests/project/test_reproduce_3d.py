"""The layouts scripts/reproduce_3d.py scores: prostate folds and the subject → MNI pair."""

import importlib.util
import sys
from pathlib import Path

import nibabel
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
spec = importlib.util.spec_from_file_location("reproduce_3d", ROOT / "scripts" / "reproduce_3d.py")
reproduce_3d = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reproduce_3d)
needs_data = pytest.mark.skipif(
    not reproduce_3d.PROSTATE.is_dir(), reason="../shared/data is absent"
)


@needs_data
def test_every_case_is_held_out_by_exactly_one_fold_and_never_trained_on_there(tmp_path):
    folds = reproduce_3d.prostate_folds(tmp_path)
    held = [sorted(p.name for p in (f / "test" / "fixed_images").iterdir()) for f in folds]
    cases = sorted(name for test in held for name in test)
    assert len(cases) == len(set(cases)) == 27
    for fold, test in zip(folds, held, strict=True):
        train = {p.name for p in (fold / "train" / "moving_labels").iterdir()}
        assert not train & set(test) and len(train) + len(test) == 27


@needs_data
def test_the_subject_lies_in_the_templates_axis_order_with_grey_and_white_matter(tmp_path):
    folder = reproduce_3d.brain_layout(tmp_path)
    subject = nibabel.load(folder / "moving_images" / "mni.nii.gz")
    classes = np.asarray(nibabel.load(folder / "moving_labels" / "mni.nii.gz").dataobj)
    tissue = np.asarray(nibabel.load(folder / "fixed_labels" / "mni.nii.gz").dataobj)
    assert subject.shape == (160, 224, 192)  # (0, 2, 1) of the stored 160×192×224
    assert set(np.unique(classes)) == set(np.unique(tissue)) == {0, 1, 2}
    # in both, white matter is mostly enclosed by grey: it lies nearer the centre
    for labels in (classes, tissue):
        centre = np.array(labels.shape) / 2
        distance = {
            k: np.linalg.norm(np.argwhere(labels == k) - centre, axis=1).mean() for k in (1, 2)
        }
        assert distance[2] < distance[1]


@needs_data
def test_a_modality_layout_holds_one_modality_of_the_training_cases_only(tmp_path):
    fold = reproduce_3d.prostate_folds(tmp_path)[0]
    trained = sorted(p.name for p in (fold / "train" / "moving_images").iterdir())
    for side, shape in (("moving", (64, 64, 60)), ("fixed", (44, 59, 41))):
        layout = reproduce_3d.modality_layout(fold, side)
        for part in ("images", "labels"):
            assert sorted(p.name for p in (layout / part).iterdir()) == trained
        first = nibabel.load(layout / "images" / trained[0])
        assert first.shape == shape  # MR volumes for the moving side, ultrasound for fixed
