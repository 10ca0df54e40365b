"""The longest the napari GUI thread stops while the Register widget registers and shows.

A ``QTimer`` ticks every 10 ms on the GUI thread from the click on **Register** until
one second after the last result layer was added (in a shown window, so drawing the
layers counts); the largest gap between two ticks is the longest the window froze.
Each case runs in a fresh process under ``xvfb-run`` (software OpenGL): a pair of
ISBI EM sections (512²), of T98G frames (1022×1024) and of ISBI sections upsampled to
3072², and an 8-frame stack of each, registered with the built-in models (the grid,
Jacobian, folds and checkerboard shown, as by default). ``--code DIR`` runs the cases
with another checkout's ``napari_deepsim`` and ``src_training`` (the code before a
change: ``git archive main | tar -x -C DIR``), so before and after are measured in one
run on one machine. The anchor rows time napari itself adding one image layer of the
same size in the same shown window: no result layer can arrive in less.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
DATA = Path(os.environ.get("DEEPSIM_DATA", ROOT.parent / "shared" / "data"))
CASES = [("isbi", 512, "pair"), ("isbi", 512, "anchor"), ("t98g", 1024, "pair")]
CASES += [("t98g", 1024, "anchor"), ("isbi", 3072, "pair"), ("isbi", 3072, "anchor")]
CASES += [("isbi", 512, "stack"), ("t98g", 1024, "stack"), ("isbi", 3072, "stack")]
"""``anchor``: napari alone adds the moving image as a new layer (no plugin), the floor;
each runs right after the pair of its size, so that both see the same load."""
TARGET_MS = {512: 200, 1024: 200, 3072: 500}
TARGET_RATIO = 1.5  # longest gap while results are added, against napari's own add (issue 26)
MODELS = {"isbi": "em-2d", "t98g": "phase-contrast-2d"}
FRAMES = 8
TICK_MS = 10
SETTLE_S = 1.0


def _images(dataset: str, size: int, count: int) -> list[Any]:
    """``count`` consecutive frames of a dataset as float32, upsampled to ``size`` if asked."""
    import numpy as np
    import PIL.Image
    from scipy import ndimage

    folder = DATA / ("isbi2012_em" if dataset == "isbi" else "t98g_phase") / "images"
    files = sorted(folder.iterdir())[:count]
    frames = [np.asarray(PIL.Image.open(f), np.float32) for f in files]
    if size > max(frames[0].shape):
        factor = size / max(frames[0].shape)
        frames = [ndimage.zoom(f, factor, order=1) for f in frames]
    return frames


def case(dataset: str, size: int, kind: str) -> dict[str, Any]:
    """Register one case in a shown viewer and return the gaps (run in a fresh process)."""
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    frames = _images(dataset, size, FRAMES if kind == "stack" else 2)
    viewer = napari.Viewer(show=True)
    if kind == "anchor":
        return _anchor(viewer, frames, size)
    if kind == "stack":
        fixed = moving = viewer.add_image(np.stack(frames), name="frames")
    else:
        fixed = viewer.add_image(frames[0], name="fixed")
        moving = viewer.add_image(frames[1], name="moving")
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Register")
    widget.fixed.value, widget.moving.value = fixed, moving
    widget.set_model(MODELS[dataset])
    app = QApplication.instance()
    ticks, timer = _heartbeat(app)
    layers = len(viewer.layers)
    added: list[float] = []
    viewer.layers.events.inserted.connect(lambda _event: added.append(time.perf_counter()))
    start = time.perf_counter()
    ticks.append(start)
    timer.start()
    widget.register()
    done = None
    while done is None or time.perf_counter() < done + SETTLE_S:
        app.processEvents()
        time.sleep(0.002)
        if done is None and not widget.running and len(viewer.layers) > layers:
            done = time.perf_counter()
        if time.perf_counter() - start > 900:
            raise TimeoutError("the registration did not finish in 15 minutes")
    timer.stop()
    gaps = np.diff(ticks)
    ends = np.asarray(ticks[1:])
    shown = gaps[ends >= added[0]]  # the result phase: from the gap the first layer fell in
    result_gap = float(shown.max()) if len(shown) else 0.0
    row = {
        "data": dataset,
        "size": f"{frames[0].shape[0]}×{frames[0].shape[1]}",
        "side": size,
        "kind": f"{kind} ({FRAMES} frames)" if kind == "stack" else kind,
        "max_gap_ms": 1000 * float(gaps.max()),
        "result_gap_ms": 1000 * result_gap,
        "wall_s": done - start,
        "layers": len(viewer.layers) - layers,
        "load": round(os.getloadavg()[0], 2),
    }
    viewer.close()
    return row


def _heartbeat(app: Any) -> tuple[list[float], Any]:
    """Let the window draw what it shows (shaders built), then make the unstarted clock.

    Returns the list its ticks append ``time.perf_counter()`` to and the ``QTimer``.
    """
    from qtpy.QtCore import QTimer

    for _ in range(50):
        app.processEvents()
        time.sleep(0.01)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    return ticks, timer


def _anchor(viewer: Any, frames: list[Any], side: int) -> dict[str, Any]:
    """Time napari adding the moving image as a layer beside the shown fixed image."""
    import numpy as np
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    viewer.add_image(frames[0], name="fixed")
    app = QApplication.instance()
    ticks, timer = _heartbeat(app)
    ticks.append(time.perf_counter())
    timer.start()
    QTimer.singleShot(0, lambda: viewer.add_image(frames[1], name="moving"))
    end = time.perf_counter() + SETTLE_S
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)
    timer.stop()
    gap = 1000 * float(np.diff(ticks).max())
    row = {"data": "", "size": f"{frames[0].shape[0]}×{frames[0].shape[1]}", "side": side}
    row |= {"kind": "napari adds one image layer", "max_gap_ms": gap, "result_gap_ms": gap}
    row |= {"layers": 1, "load": round(os.getloadavg()[0], 2)}
    viewer.close()
    return row


def _run_case(code: Path, dataset: str, size: int, kind: str) -> dict[str, Any]:
    command = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, str(HERE)]
    command += ["--case", dataset, str(size), kind]
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "2"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"data": dataset, "side": size, "kind": kind, "error": done.stderr[-800:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median gap while results are added, with the range over the runs."""
    done = sorted((r for r in runs if "error" not in r), key=lambda r: r["result_gap_ms"])
    if not done:
        return runs[-1]
    gaps = [r["result_gap_ms"] for r in done]
    spread = f"{gaps[0]:.0f}–{gaps[-1]:.0f}" if len(gaps) > 1 else "–"
    return {**done[(len(done) - 1) // 2], "runs": len(done), "range_ms": spread}


def run(
    before: Path | None = None, only: list[str] | None = None, repeat: int = 1
) -> dict[str, Any]:
    """Measure every case with this checkout (and ``before``'s code) and record them.

    With ``repeat`` above 1 each case runs that many times, before and after taking
    turns, and its row is the run of median gap while results are added.
    """
    from benchmarks.common import RESULTS, save, table

    rows = []
    for dataset, size, kind in CASES:
        if only and not {kind, str(size), f"{size}-{kind}"} & set(only):
            continue
        codes = [("anchor", ROOT)] if kind == "anchor" else [("before", before), ("after", ROOT)]
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label, code in codes if code}
        for _ in range(repeat):
            for label, code in codes:
                if code is None:
                    continue
                row = {"code": label, **_run_case(code, dataset, size, kind)}
                row["target_ms"] = TARGET_MS[size]
                print(json.dumps(row), flush=True)
                runs[label].append(row)
        rows += [_median(found) for found in runs.values()]
    extra = {}
    if only and (RESULTS / "gui_gap.json").is_file():  # keep the cases not run again
        kept = json.loads((RESULTS / "gui_gap.json").read_text())
        extra = {"note": kept["note"]} if "note" in kept else {}
        again = {(r["code"], r["side"], r["kind"].split()[0]) for r in rows}
        rows = [
            r for r in kept["rows"] if (r["code"], r["side"], r["kind"].split()[0]) not in again
        ] + rows
    record = save("gui_gap", rows, **extra)
    print(table(rows, COLUMNS))
    return record


COLUMNS = [
    ("code", "code"),
    ("size", "image"),
    ("kind", "registered"),
    ("max_gap_ms", "longest GUI gap, ms"),
    ("result_gap_ms", "longest gap while results are added, ms"),
    ("range_ms", "range over the runs, ms"),
    ("target_ms", "target, ms"),
    ("ratio", "× napari's own add"),
    ("wall_s", "click to last layer, s"),
    ("layers", "layers added"),
    ("load", "load"),
    ("note", "note"),
]


def _noted(row: dict[str, Any]) -> dict[str, Any]:
    """A row for the page: a case that could not run says why in its last column."""
    if "error" not in row:
        return row
    reason = row["error"].strip().splitlines()[-1].split(": ", 1)[-1]
    return {**row, "note": reason[:140]}


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's gap while results are added over the anchor's of the same size."""
    anchors = {r["side"]: r["result_gap_ms"] for r in rows if r["code"] == "anchor"}
    return [
        {**r, "ratio": f"{r['result_gap_ms'] / anchors[r['side']]:.2f}"}
        if r["code"] != "anchor" and "result_gap_ms" in r and anchors.get(r["side"])
        else r
        for r in rows
    ]


def section(record: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    """The page's section on the GUI gap, and its targets."""
    from benchmarks.common import table

    rows = _ratios([_noted(r) for r in record["rows"]])
    after = [r for r in rows if r["code"] == "after" and "error" not in r]
    worst = {
        side: max((r["max_gap_ms"] for r in after if r["side"] == side), default=0.0)
        for side in TARGET_MS
    }
    targets = [
        {
            "benchmark": "gui_gap",
            "target": f"longest GUI-thread gap ≤ {TARGET_MS[side]} ms at {side}²",
            "measured": f"{worst[side]:.0f} ms",
            "verdict": "**met**" if worst[side] <= TARGET_MS[side] else "**not met**",
        }
        for side in TARGET_MS
        if any(r["side"] == side for r in after)
    ]
    for side in TARGET_MS:
        pairs = [r for r in after if r["side"] == side and r["kind"] == "pair"]
        ratios = [float(r["ratio"]) for r in pairs if "ratio" in r]  # a stack's layer is 8
        if ratios:
            targets.append(
                {
                    "benchmark": "gui_gap",
                    "target": f"gap while results are added ≤ {TARGET_RATIO}× napari's own "
                    f"add of one layer at {side}² (pair)",
                    "measured": f"{max(ratios):.2f}×",
                    "verdict": "**met**" if max(ratios) <= TARGET_RATIO else "**not met**",
                }
            )
    text = f"""## 9. GUI-thread gaps while registering

`benchmarks/bench_gui_gap.py` (run under `xvfb-run`, software OpenGL): a 10 ms `QTimer`
on napari's GUI thread from the click on **Register** until a second after the last
result layer; the longest gap between two ticks is the longest the window froze.
"before" is the code before the change (`--before DIR`), measured on the same machine.
{record.get("note", "")}

{table(rows, COLUMNS)}

The anchor rows are the floor: napari itself adding one image layer of the same size to
the same shown window; no result layer can arrive in less, and the target is the longest
gap while results are added at most 1.5× that (the "× napari's own add" column).

An earlier change (round 1) drew every overlay in the worker (the grid as an image of
lines, folds as an image or points) and added the layers one per turn of the event loop,
where the whole result had been added in one slot (a Shapes grid of hundreds of paths,
a Labels layer of the folds). Issue 26 still measured 0.41–1.10 s against napari's own
0.23–0.24 s, for two reasons, fixed since (the "before" rows are the code before them):
the hidden Jacobian was added with its colour bar shown, and napari builds a colour
bar's visual at once (0.17–0.5 s more than any other layer; it is now built when the
layer is first shown), and the layer steps ran on a repeating 0 ms timer, which ran two
adds back to back before the GUI thread's other timers (now each step starts 1 ms after
the one before ended, so what came due meanwhile runs first). The longest gap is now one
layer's add and draw on this software-rendered display (a stack's layers hold its 8
frames, against one frame for the anchor). The 200 ms targets of the first round stay
out of reach on this display under this load: napari's own add alone took 0.26–0.44 s.
"""
    return text, targets


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs=3, metavar=("DATA", "SIZE", "KIND"))
    parser.add_argument("--before", type=Path, help="a checkout of the code before the change")
    parser.add_argument(
        "--only", nargs="+", help="only these cases: a kind (pair, stack), a size, or 3072-pair"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case (median)")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case(args.case[0], int(args.case[1]), args.case[2])))
    else:
        sys.path.insert(0, str(ROOT))
        run(args.before, args.only, args.repeat)
