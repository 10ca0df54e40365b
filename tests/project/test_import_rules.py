"""The layer rules of docs/architecture.md, read from every import in the code.

Imports count wherever they stand: at the top, inside functions and under
``TYPE_CHECKING``. Each rule is also checked against a small made-up module that breaks
it, so a rule that stopped seeing imports would fail here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# the core's floors: a package imports only packages on lower floors (and itself)
FLOORS = {
    "cli": 6,
    "engine": 5,
    "training": 4,
    "registration": 4,
    "optimisation": 4,
    "evaluation": 3,
    "networks": 3,
    "data": 2,
    "metrics": 2,
    "spatial": 1,
    "runtime": 1,
    "models": 1,
}
GUI = ("qtpy", "magicgui", "napari", "superqt", "vispy")
# the plugin's rooms: what each may import of the plugin, and whether it may touch a GUI
ROOMS = {
    "_jobs": ({"_jobs"}, False),
    "_state": ({"_state"}, True),
    "_layers": ({"_layers", "_jobs", "_state"}, True),
    "_widgets": ({"_widgets", "_layers", "_jobs", "_state", "_io", "_volumes"}, True),
    "_io": (set(), True),
    "_volumes": (set(), True),
    "_sample_data": (set(), True),
}


def module_name(path: Path) -> str:
    """The dotted name of a file of the repository."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, name: str, is_package: bool = False, typing: bool = True) -> set[str]:
    """Every module a source imports, by dotted name (relative imports resolved).

    With ``typing`` False, imports under ``if TYPE_CHECKING:`` are left out.
    """
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(source)
    skipped = set()
    if not typing:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped |= {id(sub) for part in node.body for sub in ast.walk(part)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            parts = [*base, node.module] if node.level else [node.module]
            module = ".".join(part for part in parts if part)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def core_violations(name: str, modules: set[str]) -> set[str]:
    """The imports of core module ``name`` that go up, or sideways into a sibling."""
    own = name.split(".")[1]
    return {
        module
        for module in modules
        if module.startswith("src_training.")
        and (other := module.split(".")[1]) in FLOORS
        and other != own
        and FLOORS[other] >= FLOORS[own]
    }


def core_imports(modules: set[str]) -> set[str]:
    """The core modules imported besides the engine (the root package counts too)."""
    return {
        module
        for module in modules
        if (module == "src_training" or module.startswith("src_training."))
        and not module.startswith("src_training.engine")
        and module.rsplit(".", 1)[0] not in modules - {module}
    }


def plugin_violations(name: str, modules: set[str]) -> set[str]:
    """The imports of plugin module ``name`` that break its room's rules."""
    room = name.split(".")[1]
    allowed, gui = ROOMS[room]
    bad = set()
    for module in modules:
        top, _, rest = module.partition(".")
        if top == "napari_deepsim" and rest and rest.split(".")[0] not in allowed | {room}:
            bad.add(module)
        if top in GUI and not gui:
            bad.add(module)
        if room == "_widgets" and module.startswith("napari_deepsim._widgets."):
            mine, theirs = name.split(".")[2], module.split(".")[2]
            if widget_folder(mine) and widget_folder(theirs) and mine != theirs:
                bad.add(module)
    return bad


def widget_folder(name: str) -> bool:
    """Whether ``_widgets/<name>`` is one widget's own folder."""
    return (ROOT / "napari_deepsim" / "_widgets" / name / "widget.py").exists()


def sources(folder: str) -> list[Path]:
    """The Python files of a top-level folder."""
    return sorted((ROOT / folder).rglob("*.py"))


def read(path: Path) -> set[str]:
    """The modules a file of the repository imports."""
    return imported(path.read_text(), module_name(path), path.name == "__init__.py")


@pytest.mark.parametrize("path", sources("src_training"), ids=str)
def test_the_core_imports_only_down(path):
    name = module_name(path)
    if name.count(".") == 0:
        return
    modules = read(path)
    assert not core_violations(name, modules)
    assert not {m for m in modules if m.split(".")[0] in (*GUI, "napari_deepsim")}


@pytest.mark.parametrize("path", sources("napari_deepsim"), ids=str)
def test_the_plugin_keeps_its_rooms(path):
    name = module_name(path)
    if name.count(".") == 0:
        return
    assert not plugin_violations(name, read(path))


@pytest.mark.parametrize("path", sources("napari_deepsim"), ids=str)
def test_the_plugin_imports_nothing_of_the_core_but_the_engine(path):
    # its types and small helpers included: src_training.engine.public re-exports them
    assert not core_imports(read(path))


def test_every_plugin_module_lies_in_a_room():
    for path in sources("napari_deepsim"):
        name = module_name(path)
        assert name == "napari_deepsim" or name.split(".")[1] in ROOMS, name


def test_the_rules_see_what_breaks_them():
    up = imported("from src_training.networks.models import UNet\n", "src_training.runtime.memory")
    assert core_violations("src_training.runtime.memory", up)
    side = imported(
        "def f():\n    from src_training.registration import inference\n",
        "src_training.training.trainers",
    )
    assert core_violations("src_training.training.trainers", side)
    down = imported("from ..data import pairs\n", "src_training.training.trainers")
    assert down == {"src_training.data", "src_training.data.pairs"}
    assert not core_violations("src_training.training.trainers", down)
    qt = imported(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from qtpy import QtCore\n",
        "napari_deepsim._jobs.register",
    )
    assert plugin_violations("napari_deepsim._jobs.register", qt) == {"qtpy", "qtpy.QtCore"}
    here = "napari_deepsim._widgets.register.widget"
    widget = imported("from ..compare.rows import RowChoice\n", here)
    assert plugin_violations(here, widget) == {
        "napari_deepsim._widgets.compare.rows",
        "napari_deepsim._widgets.compare.rows.RowChoice",
    }
    jobs_up = imported("from napari_deepsim._widgets import tips\n", "napari_deepsim._jobs.train")
    assert plugin_violations("napari_deepsim._jobs.train", jobs_up)
    typed = (
        "if TYPE_CHECKING:\n    from src_training.data.pairs import Pair\n"
        "from src_training.spatial.grid import grid_lines\n"
    )
    runtime = imported(typed, "napari_deepsim._jobs.x", typing=False)
    assert core_imports(runtime) == {"src_training.spatial.grid"}
    assert core_imports(imported("from src_training import __version__\n", "napari_deepsim"))
