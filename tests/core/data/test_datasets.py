"""Dataset loading: every real layout in ../shared/data, synthetic round trips, errors."""

from pathlib import Path

import nibabel
import numpy as np
import pytest
import tifffile
from PIL import Image

from src_training.data import reading as io
from src_training.data.datasets import (
    load_dataset,
    load_image_file,
    load_label_file,
    parse_frames,
)
from src_training.data.normalise import resample

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


@pytest.fixture(scope="module")
def data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"the shared real data folder {DATA} is absent")
    return DATA


@pytest.fixture(scope="module")
def isbi_full(data):
    return load_dataset(data / "isbi2012_em")


def _rng():
    return np.random.default_rng(0)


def _save_nifti(path, array, zooms):
    image = nibabel.Nifti1Image(array, np.eye(4))
    image.header.set_zooms(zooms)
    nibabel.save(image, path)


def _normalised(array):
    low, high = np.percentile(array, (1, 99))
    return (array - low) / (high - low)


def _folder(root, images, labels=None):
    """Write ``images`` (and ``labels``) as ``root/images/NAME`` files, PNG by default."""
    for folder, arrays in (("images", images), ("labels", labels)):
        if arrays is None:
            continue
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, array in arrays.items():
            path = root / folder / (name if "." in name else name + ".png")
            if io.file_suffix(path) == ".tif":
                tifffile.imwrite(path, array, photometric="minisblack")
            else:
                Image.fromarray(array).save(path)
    return root


# --- the real datasets ------------------------------------------------------------------


def test_isbi_two_classes_and_frame_selection(data, isbi_full):
    assert isbi_full.images.shape == (30, 1, 512, 512)
    assert isbi_full.images.dtype == np.float32
    assert isbi_full.labels.dtype == np.int64
    assert isbi_full.class_values == [0, 255] and isbi_full.num_classes == 2
    assert isbi_full.ndim == 2 and isbi_full.channels == 1 and len(isbi_full) == 30
    assert isbi_full.names[:2] == ["00", "01"] and isbi_full.pairs is None
    head = load_dataset(data / "isbi2012_em", frames=slice(0, 5))
    assert len(head) == 5 and head.names == ["00", "01", "02", "03", "04"]
    np.testing.assert_array_equal(head.labels, isbi_full.labels[:5])
    tail = load_dataset(data / "isbi2012_em", frames=parse_frames("25:30"))
    assert tail.class_values == isbi_full.class_values
    assert tail.names == ["25", "26", "27", "28", "29"]
    assert "frames 25:30" in tail.source


def test_isbi_normalisation_puts_percentiles_at_zero_and_one(isbi_full):
    for image in isbi_full.images[:3]:
        low, high = np.percentile(image, (1, 99))
        assert low == pytest.approx(0, abs=1e-6) and high == pytest.approx(1, abs=1e-6)


def test_t98g_instance_ids_map_consistently_across_frames(data):
    root = data / "t98g_phase"
    first = load_dataset(root, frames=slice(0, 3))
    later = load_dataset(root, frames=slice(3, 4))
    assert first.images.shape == (3, 1, 1022, 1024)
    assert first.class_values == later.class_values and first.num_classes > 70
    values = np.asarray(first.class_values)
    for index, name in enumerate(first.names):
        raw = np.asarray(Image.open(root / "labels" / f"{name}.png"))
        np.testing.assert_array_equal(values[first.labels[index]], raw)
    foreground = load_dataset(root, frames=slice(0, 2), labels="foreground")
    assert foreground.num_classes == 2 and foreground.class_values == [0, 1]
    np.testing.assert_array_equal(foreground.labels, (first.labels[:2] > 0).astype(np.int64))


def test_c2c12_npz_stack_with_tracked_ids(data):
    path = data / "small_timelapses" / "c2c12_phase_data_small.npz"
    dataset = load_dataset(path)
    raw = np.load(path)["labels"]
    assert dataset.images.shape == (10, 1, 234, 234) and dataset.ndim == 2
    assert dataset.names[0] == "c2c12_phase_data_small[0]"
    np.testing.assert_array_equal(np.asarray(dataset.class_values)[dataset.labels], raw)
    assert load_dataset(path, labels="none").labels is None


def test_nuclei_tiff_stack_with_label_file(data):
    folder = data / "small_timelapses"
    image_path = folder / "nuclei_example_images.tif"
    dataset = load_dataset(image_path, label_file=folder / "nuclei_example_label.tif")
    assert dataset.images.shape == (6, 1, 200, 200) and dataset.labels.shape == (6, 200, 200)
    assert dataset.class_values[0] == 0 and dataset.labels.max() == dataset.num_classes - 1
    unlabelled = load_dataset(image_path, frames=slice(0, 2))
    assert unlabelled.labels is None and unlabelled.class_values == []


def test_brain_folder_with_one_npz_volume(data):
    dataset = load_dataset(data / "brain_mri_3d")
    assert dataset.ndim == 3 and dataset.images.shape == (1, 1, 160, 192, 224)
    assert dataset.names == ["test_scan"] and "test_scan.npz" in dataset.source
    scored = np.load(data / "brain_mri_3d" / "labels.npz")["labels"]
    assert set(scored.tolist()) <= set(dataset.class_values)
    assert dataset.num_classes == len(
        np.unique(np.load(data / "brain_mri_3d" / "test_scan.npz")["seg"])
    )
    assert dataset.labels.max() == dataset.num_classes - 1


def test_mni_nifti_volume_without_labels(data):
    path = data / "mni152_2009" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    dataset = load_dataset(path)
    assert dataset.images.shape == (1, 1, 197, 233, 189) and dataset.labels is None
    assert dataset.spacing == (1.0, 1.0, 1.0) and dataset.num_classes == 0


def test_prostate_paired_layout_resampled_to_the_first_fixed_grid(data):
    train = load_dataset(data / "prostate_mr_us_3d" / "train")
    assert len(train.pairs) == 25 and train.pairs[:2] == [(0, 1), (2, 3)]
    assert train.images.shape == (50, 1, 44, 59, 41)
    assert train.labels.shape == (50, 44, 59, 41)
    assert train.class_values == [0, 1, 2, 3]
    assert train.labels.min() >= 0 and train.labels.max() < train.num_classes
    assert train.names[:2] == ["case000000/moving", "case000000/fixed"]
    assert train.spacing == (0.4, 0.4, 0.4)
    test = load_dataset(data / "prostate_mr_us_3d" / "test", frames=slice(1, 2))
    assert test.pairs == [(0, 1)] and test.names == ["case000026/moving", "case000026/fixed"]


def test_paired_frames_select_cases(data):
    dataset = load_dataset(data / "prostate_mr_us_3d" / "train", frames=slice(0, 20))
    assert len(dataset.pairs) == 20 and len(dataset) == 40


@pytest.mark.parametrize(
    ("folder", "match"),
    [
        ("small_timelapses", "holds several image files .*; pass one of them"),
        ("prostate_mr_us_3d", "found no images .*subfolders test, train: pass one"),
    ],
)
def test_ambiguous_real_folders_are_refused(data, folder, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(data / folder)


# --- synthetic round trips --------------------------------------------------------------


def test_tiff_stack_is_2d_frames_unless_ndim_3(tmp_path):
    stack = _rng().integers(0, 4000, (4, 16, 20)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    frames = load_dataset(tmp_path / "stack.tif")
    assert frames.images.shape == (4, 1, 16, 20) and frames.names[3] == "stack[3]"
    volume = load_dataset(tmp_path / "stack.tif", ndim=3)
    assert volume.images.shape == (1, 1, 4, 16, 20) and volume.names == ["stack"]


def test_png_folder_and_labels_matched_by_stem(tmp_path):
    rng = _rng()
    images = {f"f{i}": rng.integers(0, 255, (12, 10), dtype=np.uint8) for i in (1, 2, 10)}
    labels = {f"f{i}.tif": np.full((12, 10), 7 * i, np.uint16) for i in (1, 2, 10)}
    dataset = load_dataset(_folder(tmp_path, images, labels))
    assert dataset.names == ["f1", "f2", "f10"]
    assert dataset.class_values == [7, 14, 70]
    assert [int(ids[0, 0]) for ids in dataset.labels] == [0, 1, 2]


def test_npy_arrays_2d_3d_and_4d(tmp_path):
    rng = _rng()
    for shape in ((8, 9), (3, 8, 9), (2, 5, 8, 9)):
        np.save(tmp_path / "a.npy", rng.random(shape))
        dataset = load_dataset(tmp_path / "a.npy")
        expected = {2: (1, 1, 8, 9), 3: (3, 1, 8, 9), 4: (2, 1, 5, 8, 9)}[len(shape)]
        assert dataset.images.shape == expected


def test_npz_keys_decide_volume_or_frames(tmp_path):
    rng = _rng()
    array = rng.random((4, 6, 7))
    seg = rng.integers(0, 3, (4, 6, 7))
    np.savez(tmp_path / "frames.npz", images=array, seg=seg)
    np.savez(tmp_path / "volume.npz", vol=array, seg=seg)
    frames = load_dataset(tmp_path / "frames.npz")
    assert frames.images.shape == (4, 1, 6, 7) and frames.labels.shape == (4, 6, 7)
    volume = load_dataset(tmp_path / "volume.npz")
    assert volume.images.shape == (1, 1, 4, 6, 7) and volume.ndim == 3
    np.testing.assert_array_equal(volume.labels[0], seg)
    assert load_dataset(tmp_path / "volume.npz", ndim=2).images.shape == (4, 1, 6, 7)


def test_nifti_3d_is_one_volume_and_4d_is_a_series(tmp_path):
    rng = _rng()
    _save_nifti(tmp_path / "v.nii.gz", rng.random((5, 6, 7)).astype(np.float32), (0.5, 1, 2))
    volume = load_dataset(tmp_path / "v.nii.gz")
    assert volume.images.shape == (1, 1, 5, 6, 7) and volume.spacing == (0.5, 1.0, 2.0)
    series = rng.random((5, 6, 7, 3)).astype(np.float32)
    _save_nifti(tmp_path / "s.nii.gz", series, (0.5, 1, 2, 3))
    loaded = load_dataset(tmp_path / "s.nii.gz", frames=slice(1, 3))
    assert loaded.images.shape == (2, 1, 5, 6, 7) and loaded.spacing == (0.5, 1.0, 2.0)
    assert loaded.names == ["s[1]", "s[2]"]
    np.testing.assert_allclose(loaded.images[1, 0], _normalised(series[..., 2]), atol=1e-6)


def test_folder_of_3d_tiff_volumes(tmp_path):
    rng = _rng()
    volumes = {f"v{i}.tif": rng.random((3, 8, 9)).astype(np.float32) for i in range(2)}
    dataset = load_dataset(_folder(tmp_path, volumes))
    assert dataset.images.shape == (2, 1, 3, 8, 9) and dataset.labels is None


def test_rgb_png_becomes_grayscale_luminance(tmp_path):
    rgb = _rng().integers(0, 255, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    array, spacing = io.read_image(tmp_path / "rgb.png")
    expected = rgb @ np.asarray(io.LUMINANCE)
    assert array.shape == (10, 12) and spacing is None
    np.testing.assert_allclose(array, expected)
    image, _ = load_image_file(tmp_path / "rgb.png")
    assert image.shape == (1, 10, 12)
    np.testing.assert_allclose(image[0], _normalised(expected), atol=1e-5)


def test_colour_and_palette_label_pngs_keep_their_classes(tmp_path):
    colours = np.zeros((4, 4, 3), np.uint8)
    colours[:2] = (255, 0, 0)
    colours[2:, :2] = (0, 0, 255)
    Image.fromarray(colours).save(tmp_path / "colours.png")
    assert sorted(np.unique(load_label_file(tmp_path / "colours.png"))) == [0, 255, 255 << 16]
    palette = Image.fromarray(np.array([[0, 1], [2, 5]], np.uint8), mode="L").convert("P")
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(load_label_file(tmp_path / "palette.png"), [[0, 1], [2, 5]])


def test_channel_masks_become_class_ids_later_channels_win(tmp_path):
    masks = np.zeros((4, 5, 6, 2), np.float32)
    masks[:2, ..., 0] = 1
    masks[1:3, ..., 1] = 1
    expected = np.zeros((4, 5, 6), np.int64)
    expected[:2] = 1
    expected[1:3] = 2
    _save_nifti(tmp_path / "masks.nii.gz", masks, (1, 1, 1, 1))
    np.testing.assert_array_equal(load_label_file(tmp_path / "masks.nii.gz"), expected)
    first = np.moveaxis(masks, -1, 0)
    np.save(tmp_path / "first.npy", first)
    loaded = load_label_file(tmp_path / "first.npy", image_shape=(4, 5, 6))
    np.testing.assert_array_equal(loaded, expected)


def test_load_image_file_variants(tmp_path):
    rng = _rng()
    np.savez(tmp_path / "scan.npz", vol=rng.random((4, 5, 6)))
    image, spacing = load_image_file(tmp_path / "scan.npz")
    assert image.shape == (1, 4, 5, 6) and image.dtype == np.float32 and spacing is None
    constant = np.full((6, 6), 3.0)
    np.save(tmp_path / "flat.npy", constant)
    np.testing.assert_array_equal(load_image_file(tmp_path / "flat.npy")[0], 0)
    np.save(tmp_path / "series.npy", rng.random((2, 3, 4, 5)))
    with pytest.raises(ValueError, match=r"has shape \(2, 3, 4, 5\); expected one 2D image"):
        load_image_file(tmp_path / "series.npy")


def test_resample_maps_corners_onto_corners():
    line = resample(np.array([0.0, 2.0, 4.0]), (5,), order=1)
    np.testing.assert_allclose(line, [0, 1, 2, 3, 4])
    labels = resample(np.array([[1, 2], [3, 4]], np.int64), (3, 3), order=0)
    assert labels.dtype == np.int64 and labels[0, 0] == 1 and labels[-1, -1] == 4
    volume = resample(np.zeros((64, 64, 60), np.uint8), (44, 59, 41), order=1)
    assert volume.shape == (44, 59, 41) and volume.dtype == np.float32


def test_subset_keeps_mapping_and_renumbers_pairs(tmp_path):
    rng = _rng()
    for role, shape in (("moving", (7, 6)), ("fixed", (6, 5))):
        for folder in (f"{role}_images", f"{role}_labels"):
            (tmp_path / folder).mkdir()
        for value, name in enumerate(("a", "b")):
            np.save(tmp_path / f"{role}_images" / f"{name}.npy", rng.random(shape))
            np.save(tmp_path / f"{role}_labels" / f"{name}.npy", np.full(shape, 10 * value))
    dataset = load_dataset(tmp_path)
    assert dataset.pairs == [(0, 1), (2, 3)] and dataset.class_values == [0, 10]
    assert dataset.images.shape == (4, 1, 6, 5) and dataset.labels[2].min() == 1
    part = dataset.subset([2, 3, 0])
    assert part.pairs == [(0, 1)] and part.class_values == [0, 10]
    assert part.names == ["b/moving", "b/fixed", "a/moving"] and "subset [2, 3, 0]" in part.source
    assert dataset.subset(range(2)).source.endswith("subset 0:2")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0:20", slice(0, 20)),
        ("5:", slice(5, None)),
        (":3", slice(None, 3)),
        ("7", slice(7, 8)),
        ("-1", slice(-1, None)),
        ("-3:-1", slice(-3, -1)),
    ],
)
def test_parse_frames(text, expected):
    assert parse_frames(text) == expected


@pytest.mark.parametrize("text", ["", "a:b", "1:2:3", "1-3", "1.5"])
def test_parse_frames_rejects_bad_text(text):
    with pytest.raises(ValueError, match=r"--frames must look like START:STOP, e\.g\. 0:20; got"):
        parse_frames(text)


# --- errors -----------------------------------------------------------------------------


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        io.read_image(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        load_dataset(tmp_path / "nothing_here")
    (tmp_path / "image.bmp").write_bytes(b"BM")
    with pytest.raises(ValueError, match=r"unsupported file type '\.bmp'.*supported: \.tif"):
        io.read_image(tmp_path / "image.bmp")


@pytest.mark.parametrize(
    ("name", "kind"),
    [("bad.png", "PNG"), ("bad.tif", "TIFF"), ("bad.nii.gz", "NIfTI"), ("bad.npy", "NumPy .npy")],
)
def test_corrupt_files(tmp_path, name, kind):
    (tmp_path / name).write_bytes(b"not an image at all")
    with pytest.raises(
        ValueError, match=rf"could not read .*{name}: .*; check that it is a complete {kind} file"
    ):
        io.read_image(tmp_path / name)


def test_corrupt_npz(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"check that it is a complete NumPy \.npz file"):
        io.read_npz(tmp_path / "bad.npz")


def test_unmatched_label_file_is_named(tmp_path):
    image = np.zeros((4, 4), np.uint8)
    _folder(tmp_path, {"a": image, "b": image}, {"a": image})
    with pytest.raises(ValueError, match=r"images/b\.png has no matching file in .*labels"):
        load_dataset(tmp_path)
    _folder(tmp_path, {}, {"b": image, "c": image})
    with pytest.raises(ValueError, match=r"labels/c\.png has no matching file in .*images"):
        load_dataset(tmp_path)


def test_images_of_different_shapes(tmp_path):
    _folder(tmp_path, {"a": np.zeros((4, 4), np.uint8), "b": np.zeros((5, 4), np.uint8)})
    with pytest.raises(
        ValueError,
        match=r"different shapes: \(4, 4\) .*a\.png.*\(5, 4\) .*b\.png.*resample or crop",
    ):
        load_dataset(tmp_path)


def test_label_shape_mismatch(tmp_path):
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    tifffile.imwrite(tmp_path / "lab.tif", np.zeros((3, 8, 7), np.uint16), photometric="minisblack")
    with pytest.raises(
        ValueError, match=r"lab\.tif has shape \(8, 7\) but its image has shape \(8, 8\)"
    ):
        load_dataset(tmp_path / "img.tif", label_file=tmp_path / "lab.tif")


def test_non_finite_images_are_refused(tmp_path):
    image = np.ones((5, 5))
    image[2, 2] = np.nan
    np.save(tmp_path / "nan.npy", image)
    with pytest.raises(ValueError, match=r"nan\.npy contains NaN or inf values"):
        load_dataset(tmp_path / "nan.npy")
    with pytest.raises(ValueError, match="NaN or inf"):
        load_image_file(tmp_path / "nan.npy")


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (slice(5, 5), r"frames 5:5 select nothing from the 4 frames of .*; use a range within 0:4"),
        (slice(2, 9), r"frames 2:9 reach outside the 4 frames of .*; use a range within 0:4"),
    ],
)
def test_bad_frame_selection(tmp_path, frames, match):
    np.save(tmp_path / "s.npy", np.zeros((4, 3, 3)))
    with pytest.raises(ValueError, match=match):
        load_dataset(tmp_path / "s.npy", frames=frames)


def test_option_errors(tmp_path):
    np.savez(tmp_path / "only_labels.npz", labels=np.arange(3))
    with pytest.raises(ValueError, match="has no image array: its keys are labels; expected"):
        load_dataset(tmp_path / "only_labels.npz")
    with pytest.raises(ValueError, match="found no images in"):
        load_dataset(tmp_path)
    _folder(tmp_path / "f", {"a": np.zeros((3, 3), np.uint8)})
    with pytest.raises(ValueError, match="label_file applies to a single image file"):
        load_dataset(tmp_path / "f", label_file=tmp_path / "x.tif")
    with pytest.raises(ValueError, match="labels must be one of classes, foreground, none"):
        load_dataset(tmp_path / "f", labels="instances")
    with pytest.raises(ValueError, match=r"each file must hold one 3D image \(ndim=3\)"):
        load_dataset(tmp_path / "f", ndim=3)


def test_paired_layout_needs_both_sides(tmp_path):
    (tmp_path / "moving_images").mkdir()
    np.save(tmp_path / "moving_images" / "a.npy", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="has moving_images/ but no fixed_images/; give both"):
        load_dataset(tmp_path)
    (tmp_path / "fixed_images").mkdir()
    np.save(tmp_path / "fixed_images" / "b.npy", np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"a\.npy has no matching file in .*fixed_images"):
        load_dataset(tmp_path)


def test_non_integer_label_values_are_refused(tmp_path):
    np.save(tmp_path / "soft.npy", np.full((3, 3), 0.25))
    with pytest.raises(ValueError, match=r"soft\.npy has non-integer values"):
        load_label_file(tmp_path / "soft.npy")
