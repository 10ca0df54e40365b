"""Figures: the data behind them, and valid PNG files of a sensible size."""

import csv
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from src_training.evaluation import figures
from src_training.evaluation.curves import convergence_figure, read_validation_curve
from src_training.evaluation.figures import (
    Panel,
    dice_boxes,
    dice_boxplot,
    field_2d,
    jacobian_figure,
    parse_zoom,
    qualitative_figure,
    view_2d,
)
from src_training.evaluation.stats import against_reference
from src_training.spatial.grid import grid_lines
from src_training.training.trainer import LOG_FIELDS


def _png_size(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def _pair_rows():
    rng = np.random.default_rng(0)
    rows = []
    for name, level in (("identity", 0.6), ("ncc", 0.8), ("deepsim", 0.9)):
        rows += [{"model": name, "dice": level + 0.01 * rng.random()} for _ in range(7)]
    return rows


def test_dice_boxes_one_per_model_labelled_with_the_references_statistics():
    rows = _pair_rows()
    scores = {
        m: [r["dice"] for r in rows if r["model"] == m] for m in ("identity", "ncc", "deepsim")
    }
    statistics = against_reference(scores, "deepsim")
    boxes = dice_boxes(rows, "deepsim", statistics)
    assert [b.name for b in boxes] == ["identity", "ncc", "deepsim"]
    assert [len(b.values) for b in boxes] == [7, 7, 7]
    assert boxes[0].values == scores["identity"]
    # 7 pairs, all in the reference's favour: p = 2**-7 < .01
    assert boxes[0].label.startswith("**\nd=") and boxes[2].label == "ref"
    assert [b.label for b in dice_boxes(rows)] == ["", "", ""]
    low = {"ncc": {"p_value": 0.3, "cohens_d": 0.1, "stars": ""}}
    assert dice_boxes(rows, "deepsim", low)[1].label == "n.s.\nd=0.10"


def test_dice_boxplot_is_a_png_that_widens_with_the_models(tmp_path):
    rows = _pair_rows()
    one = dice_boxplot(tmp_path / "one.png", dice_boxes(rows[:7]))
    three = dice_boxplot(tmp_path / "three.png", dice_boxes(rows, "deepsim"), "title")
    (w1, h1), (w3, h3) = _png_size(one), _png_size(three)
    assert 300 <= w1 < w3 <= 2000 and 300 <= h1 == h3 <= 1000


def test_grid_lines_are_the_fixed_grid_moved_by_the_field():
    field = np.zeros((2, 20, 30))
    field[0] = 1.5  # every point moves 1.5 rows down
    lines = grid_lines(field, 10)
    assert len(lines) == 2 + 3  # rows 0, 10; columns 0, 10, 20
    np.testing.assert_allclose(lines[1][:, 0], 11.5)  # the row-10 line
    np.testing.assert_allclose(lines[1][:, 1], np.arange(30))
    np.testing.assert_allclose(lines[3][:, 0], np.arange(20) + 1.5)  # the column-10 line
    np.testing.assert_allclose(lines[3][:, 1], 10)


def test_views_of_3d_data_are_the_middle_slice_with_in_plane_components():
    volume = np.arange(2 * 5 * 4 * 3, dtype=np.float32).reshape(2, 5, 4, 3)
    np.testing.assert_array_equal(view_2d(volume), volume[0, 2])
    disp = torch.arange(3 * 5 * 4 * 3, dtype=torch.float32).reshape(1, 3, 5, 4, 3)
    np.testing.assert_array_equal(field_2d(disp), disp[0, 1:, 2].numpy())
    assert view_2d(volume[:, 0]).shape == (4, 3)


def test_parse_zoom():
    assert parse_zoom("1,2,30,40", (64, 64)) == (1, 2, 30, 40)
    for bad in ("1,2,3", "a,b,c,d", "10,10,5,20", "0,0,65,10", "-1,0,5,5"):
        with pytest.raises(ValueError, match=r"--zoom must be R0,C0,R1,C1 .* 64x64 view"):
            parse_zoom(bad, (64, 64))


def test_qualitative_and_jacobian_figures(tmp_path):
    rng = np.random.default_rng(1)
    fixed, moving = rng.random((2, 48, 64)).astype(np.float32)
    folded = torch.zeros(1, 2, 48, 64)
    folded[0, 1, :, 32:] = -3.0  # a fold along column 32
    fields = {"identity": torch.zeros(1, 2, 48, 64), "folded": folded}
    panels = [Panel(name, moving, field_2d(disp)) for name, disp in fields.items()]
    plain = qualitative_figure(tmp_path / "q1.png", fixed, moving, panels, spacing=8)
    zoomed = qualitative_figure(
        tmp_path / "q2.png", fixed, moving, panels, spacing=8, zoom=(4, 4, 20, 30), title="t"
    )
    (w1, h1), (w2, h2) = _png_size(plain), _png_size(zoomed)
    assert w1 == w2 >= 4 * 150 and h2 > 1.7 * h1  # four columns; a second row when zoomed
    jac = jacobian_figure(tmp_path / "j.png", fields, "title")
    w, h = _png_size(jac)
    assert 2 * 150 <= w <= 2000 and 150 <= h <= 1000
    volume = {"v": torch.zeros(1, 3, 6, 16, 16)}
    assert _png_size(jacobian_figure(tmp_path / "j3.png", volume))[0] > 150


def test_a_box_plot_of_many_models_draws_one_row_per_model(tmp_path):
    rows = [
        {"model": f"method {i}", "dice": 0.5 + 0.01 * i + 0.001 * p}
        for i in range(30)
        for p in range(4)
    ]
    boxes = dice_boxes(rows, "method 3", None)
    few = _png_size(dice_boxplot(tmp_path / "few.png", boxes[:12]))
    many = _png_size(dice_boxplot(tmp_path / "many.png", boxes))
    assert few[0] > few[1] and many[1] > many[0]  # across for 12; one row each for 30
    assert many[0] <= 800 and many[1] > 30 * 25  # legible at a page's width


def test_many_methods_wrap_onto_rows_of_at_most_eight_panels(tmp_path):
    moving = np.random.default_rng(2).random((32, 32)).astype(np.float32)
    fields = {f"m{i}": torch.zeros(1, 2, 32, 32) for i in range(14)}
    panels = [Panel(name, moving, field_2d(disp)) for name, disp in fields.items()]
    few = _png_size(qualitative_figure(tmp_path / "few.png", moving, moving, panels[:6]))
    many = _png_size(qualitative_figure(tmp_path / "many.png", moving, moving, panels))
    assert many[0] == few[0] and 1.8 * few[1] < many[1] < 2.2 * few[1]  # 16 = 2 rows of 8
    jac_few = _png_size(jacobian_figure(tmp_path / "jf.png", dict(list(fields.items())[:7])))
    jac_many = _png_size(jacobian_figure(tmp_path / "jm.png", fields))
    assert jac_many[0] == jac_few[0] and jac_many[1] > 1.8 * jac_few[1]  # 14 = 2 rows of 7


def _log(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_convergence_reads_the_validation_rows_and_plots_them(tmp_path):
    rows = [
        {"step": 1, "seconds": "0.5", "loss": 0.9},
        {"step": 2, "seconds": "1.0", "loss": 0.8},
        {"step": 2, "seconds": "1.2", "val_dice": 0.7, "val_loss": 0.3},
        {"step": 4, "seconds": "2.5", "val_dice": 0.8, "val_loss": 0.2},
    ]
    curve = read_validation_curve(_log(tmp_path / "ncc.csv", rows))
    assert curve.name == "ncc"
    np.testing.assert_array_equal(curve.steps, [2, 4])
    np.testing.assert_allclose(curve.seconds, [1.2, 2.5])
    np.testing.assert_allclose(curve.dice, [0.7, 0.8])
    other = read_validation_curve(_log(tmp_path / "b.csv", rows), "deepsim")
    assert other.name == "deepsim"
    w, h = _png_size(convergence_figure(tmp_path / "c.png", [curve, other]))
    assert 600 <= w <= 2000 and 200 <= h <= 1000


def test_convergence_refuses_logs_without_validation(tmp_path):
    path = _log(tmp_path / "r.csv", [{"step": 1, "seconds": "0.5", "loss": 0.9}])
    with pytest.raises(ValueError, match=r"^\S*r.csv holds no validation Dice; train with"):
        read_validation_curve(path)
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="lacks the column"):
        read_validation_curve(tmp_path / "x.csv")


def test_a_missing_matplotlib_is_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ValueError, match=r"^figures need matplotlib.*; pip install matplotlib$"):
        figures.require_matplotlib()
    with pytest.raises(ValueError, match="pip install matplotlib"):
        dice_boxplot(tmp_path / "b.png", dice_boxes(_pair_rows()))
