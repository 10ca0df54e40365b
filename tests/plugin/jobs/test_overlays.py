"""Overlays and displacement files: analytic grids, shifts, checkerboards, folds, I/O."""

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_deepsim import _io
from napari_deepsim._jobs.grid_raster import draw_lines, line_width, warped_grid
from napari_deepsim._jobs.overlays import checkerboard, fold_points, folds, subsampled_vectors
from src_training.registration.inference import warp_array
from src_training.spatial.fieldio import FieldFile, load_field
from src_training.spatial.grid import grid_lines


def _shift(shape, *shift):
    return np.stack([np.full(shape, s, np.float32) for s in shift])


def test_zero_field_gives_straight_lines_on_multiples_of_the_spacing():
    lines = grid_lines(np.zeros((2, 20, 30), np.float32), spacing=8)
    rows, cols = lines[:3], lines[3:]
    assert len(rows) == 3 and len(cols) == 4  # rows 0, 8, 16; columns 0, 8, 16, 24
    for r, line in zip((0, 8, 16), rows, strict=True):
        np.testing.assert_array_equal(line, np.stack([np.full(30, r), np.arange(30)], axis=1))
    for c, line in zip((0, 8, 16, 24), cols, strict=True):
        np.testing.assert_array_equal(line, np.stack([np.arange(20), np.full(20, c)], axis=1))


def test_constant_shift_moves_every_line_to_where_it_samples_the_moving_image():
    disp = _shift((16, 16), 2.5, -3.0)
    straight = grid_lines(np.zeros_like(disp), spacing=4)
    for moved, line in zip(grid_lines(disp, spacing=4), straight, strict=True):
        np.testing.assert_allclose(moved, line + np.array([2.5, -3.0]))
    # The pull-back convention: the fixed point p shows moving(p + u), so a bright dot of the
    # moving image at (7.5, 5) appears in the warped image at (5, 8), the grid node at p.
    moving = np.zeros((16, 16), np.float32)
    moving[7:9, 5] = 1
    warped = warp_array(moving[None], torch.from_numpy(disp)[None])[0]
    assert warped[5, 8] == pytest.approx(1.0)


def _straight(shape, spacing):
    expected = np.zeros(shape, np.float32)
    expected[::spacing] = 1
    expected[:, ::spacing] = 1
    return expected


def test_identity_field_draws_straight_lines_on_every_slice_and_frame():
    np.testing.assert_allclose(warped_grid(np.zeros((2, 12, 10)), 4), _straight((12, 10), 4))
    volume = warped_grid(np.zeros((3, 5, 12, 10)), 4)  # slices along the first axis
    stack = warped_grid(np.zeros((3, 2, 12, 10)), 4)  # three frames of a 2D+t stack
    assert volume.shape == (5, 12, 10) and stack.shape == (3, 12, 10)
    for image in (*volume, *stack):
        np.testing.assert_allclose(image, _straight((12, 10), 4))


def test_a_known_shift_moves_the_lines_of_every_slice_by_its_in_plane_part():
    disp = np.zeros((3, 4, 16, 16), np.float32)
    disp[0] = 7.0  # out of plane: no effect on the slices' lines
    disp[1], disp[2] = 3.0, -2.0  # rows down by 3, columns left by 2: lines at p + u(p)
    expected = np.zeros((16, 16), np.float32)
    expected[3::8, :14] = 1  # rows 0 and 8 at rows 3 and 11, columns 0..15 at -2..13
    expected[3:, 6] = 1  # column 8 at column 6 (column 0 moved out), rows 0..12 at 3..15
    for image in warped_grid(disp, 8):
        np.testing.assert_allclose(image, expected)


def test_lines_stay_continuous_where_the_field_stretches():
    rows = np.arange(32, dtype=np.float32)
    disp = np.zeros((2, 32, 32), np.float32)
    disp[1] = rows[None, :] * 2.0  # columns spread three times apart: segments 3 px long
    image = warped_grid(disp, 16, width=1)
    assert image[0, :94].min() > 0.9  # row 0's line has no gaps up to the image edge
    assert draw_lines([np.array([[1.0, 1.0], [1.0, 9.0]])], (4, 12))[1, 1:10].min() > 0.9


def test_line_width_grows_with_the_image():
    assert line_width((512, 512)) == 1 and line_width((3072, 3072)) == 3
    wide = warped_grid(np.zeros((2, 40, 40)), 16, width=3)
    np.testing.assert_allclose(wide[15:18, 5], 1.0)
    assert wide[19, 5] == 0


def test_fold_points_are_the_non_positive_voxels_thinned_to_a_limit():
    jacobian = np.ones((4, 5, 6))
    jacobian[1, 2, 3] = -0.5
    jacobian[3, 0, 0] = 0.0
    np.testing.assert_array_equal(fold_points(jacobian), [[1, 2, 3], [3, 0, 0]])
    many = fold_points(-np.ones((10, 10, 10)), limit=100)
    assert 50 <= len(many) <= 100 and many.shape[1] == 3


def test_checkerboard_alternates_tiles_in_2d_and_3d():
    a, b = np.zeros((8, 8)), np.ones((8, 8))
    board = checkerboard(a, b, tiles=4)
    expected = np.indices((4, 4)).sum(axis=0) % 2
    np.testing.assert_array_equal(board[::2, ::2], expected)
    np.testing.assert_array_equal(board[1::2, 1::2], expected)
    cube = checkerboard(np.zeros((4, 4, 4)), np.ones((4, 4, 4)), tiles=2)
    assert cube[0, 0, 0] == 0 and cube[0, 0, 3] == 1 and cube[3, 3, 0] == 0 and cube[3, 3, 3] == 1
    with pytest.raises(ValueError, match="differ in shape"):
        checkerboard(a, np.ones((4, 4)), 2)


def test_3d_vectors_start_on_the_fixed_lattice_and_point_along_the_field():
    disp = np.stack([np.full((6, 6, 6), v, np.float32) for v in (1.0, -2.0, 0.5)])
    vectors = subsampled_vectors(disp, step=3)
    assert vectors.shape == (8, 2, 3)
    np.testing.assert_array_equal(vectors[:, 0], np.argwhere(np.ones((2, 2, 2))) * 3)
    np.testing.assert_array_equal(vectors[:, 1], np.tile([1.0, -2.0, 0.5], (8, 1)))


def test_vectors_start_on_the_fixed_grid_and_point_along_the_field():
    disp = _shift((6, 9), 1.0, -2.0)
    vectors = subsampled_vectors(disp, step=3)
    assert vectors.shape == (6, 2, 2)
    np.testing.assert_array_equal(vectors[:, 0], [[0, 0], [0, 3], [0, 6], [3, 0], [3, 3], [3, 6]])
    np.testing.assert_array_equal(vectors[:, 1], np.tile([1.0, -2.0], (6, 1)))


def test_folds_marks_only_non_positive_determinants():
    jac = np.array([[1.0, 0.0], [-0.5, 1e-6]])
    np.testing.assert_array_equal(folds(jac), [[0, 1], [1, 0]])
    assert folds(jac).dtype == np.uint8


def test_bad_fields_and_spacings_are_refused():
    with pytest.raises(ValueError, match="displacement field"):
        grid_lines(np.zeros((3, 4, 4, 4)), 2)
    with pytest.raises(ValueError, match="positive"):
        grid_lines(np.zeros((2, 4, 4)), 0)


def test_displacement_files_round_trip_through_reader_and_writer(tmp_path):
    field = np.random.default_rng(0).normal(size=(2, 5, 6)).astype(np.float32)
    made = FieldFile(field, (0.5, 2.0), (1.0, 3.0), provenance={"method": "ncc-isbi"})
    data, meta, kind = _io.displacement_layer_data(made, "field")
    assert data is made.displacement
    assert kind == "image" and meta["contrast_limits"][0][0] < 0
    assert meta["scale"] == [0.5, 2.0] and meta["translate"] == [1.0, 3.0]
    path = tmp_path / "field.npz"
    whole = {"metadata": {_io.MARK: True, _io.FIELD: meta["metadata"][0][_io.FIELD]}}
    assert _io.write_displacement(str(path), [(field, whole, kind)]) == [str(path)]
    reader = _io.get_reader(str(path))
    assert reader is _io.read_displacement
    [(read, kwargs, kind)] = reader(str(path))
    np.testing.assert_array_equal(read, field)
    assert kind == "image" and kwargs["channel_axis"] == 0 and kwargs["scale"] == [0.5, 2.0]
    assert kwargs["name"] == ["field axis 0", "field axis 1"]
    # The per-axis layers napari makes from the reader write back as one field, in axis order,
    # with their grid and provenance, or as an ITK transform.
    split = [(read[i], {"metadata": kwargs["metadata"][i]}, "image") for i in (1, 0)]
    again = load_field(_io.write_displacement(str(tmp_path / "again.npz"), split)[0])
    np.testing.assert_array_equal(again.displacement, field)
    assert again.spacing == (0.5, 2.0) and again.provenance == {"method": "ncc-isbi"}
    itk = _io.write_displacement(str(tmp_path / "itk.mha"), split)[0]
    assert Path(itk).read_bytes().startswith(b"ObjectType = Image")
    # an older bare .npy still opens, on the unit grid
    np.save(tmp_path / "old.npy", field)
    [(read, kwargs, _)] = _io.get_reader(str(tmp_path / "old.npy"))(str(tmp_path / "old.npy"))
    np.testing.assert_array_equal(read, field)
    assert kwargs["scale"] == [1.0, 1.0]


def test_reader_declines_other_files_and_writer_other_layers(tmp_path):
    np.save(tmp_path / "image.npy", np.zeros((64, 64), np.float32))
    np.save(tmp_path / "ints.npy", np.zeros((2, 8, 8), np.int32))
    np.savez(tmp_path / "images.npz", images=np.zeros((3, 8, 8), np.float32))
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    for name in ("image.npy", "ints.npy", "broken.npy", "images.npz"):
        assert _io.get_reader(str(tmp_path / name)) is None
    assert _io.get_reader(str(tmp_path / "x.tif")) is None
    with pytest.raises(ValueError, match="only displacement layers"):
        _io.write_displacement(str(tmp_path / "o.npz"), [(np.zeros((2, 4, 4)), {}, "image")])
    with pytest.raises(ValueError, match="not a field file"):
        load_field(tmp_path / "broken.npy")
