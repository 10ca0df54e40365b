"""The distribution: manifest, console script, import hygiene."""

import ast
import hashlib
import json
import subprocess
import sys
import zipfile
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUI_MODULES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy")


def test_installed_manifest_is_the_root_manifest():
    import npe2

    (ep,) = [e for e in entry_points(group="napari.manifest") if e.name == "napari-deepsim"]
    module, _, filename = ep.value.partition(":")
    installed = files(module) / filename
    assert installed.read_bytes() == (ROOT / "napari.yaml").read_bytes()
    loaded = npe2.PluginManifest.from_distribution("napari-deepsim")
    assert loaded == npe2.PluginManifest.from_file(ROOT / "napari.yaml")
    assert {s.key for s in loaded.contributions.sample_data} == {
        "noisy_cell_pair",
        "noisy_cell_timelapse",
        "phc_u373",
    }


@pytest.mark.slow
def test_built_wheel_ships_the_root_manifest_and_the_builtin_models(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("napari_deepsim-*.whl")
    assert wheel.stat().st_size < 25e6
    with zipfile.ZipFile(wheel) as zf:
        shipped = zf.read("napari_deepsim/napari.yaml")
        names = zf.namelist()
        registry = json.loads(zf.read("src_training/models/registry.json"))
        assert set(registry["models"]) == {"em-2d", "phase-contrast-2d", "prostate-mr-us-3d"}
        for name, entry in registry["models"].items():
            assert f"src_training/models/{entry['card']}" in names
            for part in entry["files"].values():
                data = zf.read(f"src_training/models/{part['file']}")
                assert hashlib.sha256(data).hexdigest() == part["sha256"], name
    assert shipped == (ROOT / "napari.yaml").read_bytes()
    assert {"src_training/cli/__init__.py", "src_training/engine/registration.py"} <= set(names)
    assert "napari_deepsim/_widgets/register/widget.py" in names


def test_importing_the_core_loads_no_gui_module():
    code = (
        "import sys\n"
        "import src_training, src_training.cli, src_training.spatial.transforms\n"
        "import src_training.networks.models\n"
        "import src_training.metrics, src_training.training.trainer, src_training.engine.demo\n"
        f"print([m for m in sys.modules if m.split('.')[0] in {GUI_MODULES!r}])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_importing_the_plugin_does_not_import_torch():
    code = "import sys, napari_deepsim, napari_deepsim._sample_data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sample_data_contributions_give_matching_layers():
    from napari_deepsim._sample_data import noisy_cell_pair, noisy_cell_timelapse

    pair = noisy_cell_pair()
    assert [kind for *_, kind in pair] == ["image", "image", "labels", "labels"]
    assert {data.shape for data, *_ in pair} == {(128, 128)}
    stack, labels = noisy_cell_timelapse()
    assert stack[0].shape == labels[0].shape == (8, 128, 128)


PROJECT_MODULES = sorted(
    path
    for folder in ("napari_deepsim", "src_training", "scripts", "benchmarks")
    for path in (ROOT / folder).rglob("*.py")
)


@pytest.mark.parametrize("path", PROJECT_MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_modules_stay_short(path):
    assert len(path.read_text().splitlines()) <= 400


PLUGIN_MODULES = [path for path in PROJECT_MODULES if path.is_relative_to(ROOT / "napari_deepsim")]


@pytest.mark.parametrize("path", PLUGIN_MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_plugin_modules_and_functions_stay_readable(path):
    # a newcomer reads a plugin module whole: at most 300 lines, no function over 60
    source = path.read_text()
    assert len(source.splitlines()) <= 300
    long = [
        node.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long, f"functions over 60 lines: {long}"
