"""Damaged model files: every variant is refused with one line, and nothing is written.

Storage and copying damage files: bytes flip in the pickled header, in the tensor
payload and in the zip's central directory, files are cut short, and sometimes another
program's zip arrives under a model's name. Each of the variants below, made from a
real checkpoint of a short training run, goes to ``deepsim info``, ``deepsim register``
(a fixed/moving PNG pair in a case folder) and ``deepsim train --resume`` (as the run's
``.last.pt``, beside its intact model and log). Every run must exit with 2 and print one
line ``deepsim: error: ...`` naming the file, with no traceback, and leave its case
folder byte for byte as it was. The bulk runs in-process through ``cli.main``; a
handful go through the installed ``deepsim`` command to show that it behaves the same.

Made the same way from a checkpoint of commit 96edba5, before model files carried a
checksum and a seal, the 630 runs gave 5 tracebacks (IndexError, KeyError and
OverflowError from torch's reader) and 333 exits with 0, 221 of which wrote results of
the damaged weights. Files saved before the checksum still load; their damage is
caught only where it breaks reading, but never with a traceback (the last test).
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src_training.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")
ROOT = Path(__file__).resolve().parents[3]
DEEPSIM = str(Path(sys.executable).with_name("deepsim"))
TINY = ["--metric", "mse", "--channels", "4,8", "--crop", "16", "--batch-size", "1"]
TINY += ["--device", "cpu", "--no-augment"]
COMMANDS = ("info", "register", "resume")


# --- the damaged variants --------------------------------------------------------------


def _member_spans(data: bytes) -> dict[str, tuple[int, int, int]]:
    """Each zip member's (local header start, data start, data end)."""
    spans = {}
    for info in zipfile.ZipFile(io.BytesIO(data)).infolist():
        start = info.header_offset
        name_length, extra_length = struct.unpack("<HH", data[start + 26 : start + 30])
        begin = start + 30 + name_length + extra_length
        spans[info.filename] = (start, begin, begin + info.compress_size)
    return spans


def _flip(data: bytes, offset: int, rng: random.Random) -> bytes:
    damaged = bytearray(data)
    damaged[offset] ^= rng.randrange(1, 256)
    return bytes(damaged)


def _foreign_files() -> dict[str, bytes]:
    """Files of other programs that reach a model's name: zips, torch files, pickles."""

    def zipped(members: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in members.items():
                archive.writestr(name, content)
        return buffer.getvalue()

    def saved(obj: object, **options: object) -> bytes:
        buffer = io.BytesIO()
        torch.save(obj, buffer, **options)
        return buffer.getvalue()

    npz = io.BytesIO()
    np.savez(npz, images=np.zeros((2, 8, 8), np.float32))
    return {
        "foreign-zip-of-text": zipped({"README.txt": b"notes", "data/a.csv": b"1,2\n"}),
        "foreign-empty-zip": zipped({}),
        "foreign-npz": npz.getvalue(),
        "foreign-zip-with-json-data-pkl": zipped({"archive/data.pkl": b'{"format": 1}'}),
        "foreign-torch-state-dict": saved({"conv.weight": torch.zeros(4, 1, 3, 3)}),
        "foreign-torch-tensor": saved(torch.arange(10.0)),
        "foreign-torch-list": saved([1, 2, 3]),
        "foreign-format-lookalike": saved({"format": "napari-deepsim-model", "metadata": "{"}),
        "foreign-legacy-torch": saved({"w": torch.ones(3)}, _use_new_zipfile_serialization=False),
        "foreign-docx-like-zip": zipped({"[Content_Types].xml": b"<Types/>", "word/d.xml": b""}),
    }


def damaged_variants(data: bytes, seed: int = 17) -> dict[str, bytes]:
    """At least 200 damaged copies of the model file ``data``, by name."""
    rng = random.Random(seed)
    spans = _member_spans(data)
    _, pickle_begin, pickle_end = spans[next(name for name in spans if name.endswith(".pkl"))]
    headers = [(start, begin) for start, begin, _ in spans.values()]
    tensors = [(begin, end) for name, (_, begin, end) in spans.items() if "/data/" in name]
    directory = zipfile.ZipFile(io.BytesIO(data)).start_dir
    variants = {}
    for i in range(40):  # the pickle: metadata, tensor names, shapes, dtypes, storage keys
        variants[f"header-pickle-flip-{i}"] = _flip(
            data, rng.randrange(pickle_begin, pickle_end), rng
        )
    for i in range(20):  # the zip's local file headers and their alignment padding
        start, begin = rng.choice(headers)
        variants[f"header-local-flip-{i}"] = _flip(data, rng.randrange(start, begin), rng)
    for i in range(60):
        begin, end = rng.choice(tensors)
        variants[f"payload-flip-{i}"] = _flip(data, rng.randrange(begin, end), rng)
    for i in range(30):  # the central directory and the end records (with any comment)
        variants[f"directory-flip-{i}"] = _flip(data, rng.randrange(directory, len(data)), rng)
    for i in range(10):
        offset = rng.randrange(directory, len(data) - 16)
        variants[f"directory-zeroed-{i}"] = data[:offset] + bytes(16) + data[offset + 16 :]
    for i in range(10):  # a 512-byte sector lost anywhere
        offset = rng.randrange(0, len(data) - 512)
        variants[f"sector-zeroed-{i}"] = data[:offset] + bytes(512) + data[offset + 512 :]
    cuts = [1, 2, 30, pickle_end, len(data) // 2, len(data) - 22, len(data) - 1]
    cuts += sorted(rng.sample(range(3, len(data) - 1), 23))
    for cut in cuts:
        variants[f"truncated-to-{cut}"] = data[:cut]
    variants.update(_foreign_files())
    return variants


# --- the case folders ------------------------------------------------------------------


@dataclass
class Outcome:
    """What one damaged file did to one command."""

    variant: str
    command: str
    folder: str
    code: int | None
    err: str
    traceback: str | None
    changed: bool

    def problem(self) -> str | None:
        """Why this outcome is wrong, or None."""
        lines = self.err.splitlines()
        if self.traceback is not None:
            return f"traceback: {self.traceback}"
        if self.code == 0:
            return "exit 0"
        if self.changed:
            return "the case folder changed"
        if self.code != 2 or len(lines) != 1 or not lines[0].startswith("deepsim: error: "):
            return f"exit {self.code} with {self.err!r}"
        if "model.pt" not in lines[0] and "r.last.pt" not in lines[0]:
            return f"the message names no file: {lines[0]}"
        return None


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` with the hash of its bytes."""
    return {
        str(p.relative_to(folder)): "folder"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
    }


class Cases:
    """A template folder per command; each run copies it and adds the damaged file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        run = root / "run"
        run.mkdir()
        rng = np.random.default_rng(0)
        np.savez(run / "cells.npz", images=rng.random((4, 24, 24)).astype(np.float32))
        argv = ["train", str(run / "cells.npz"), *TINY, "--steps", "2", "--out", str(run / "r.pt")]
        assert main(argv) == 0
        self.checkpoint = (run / "r.last.pt").read_bytes()
        pair = root / "pair"
        pair.mkdir()
        for name in ("fixed.png", "moving.png"):
            Image.fromarray((rng.random((24, 24)) * 255).astype(np.uint8)).save(pair / name)
        (root / "info").mkdir()
        (run / "r.last.pt").unlink()  # each variant takes its place
        self.templates = {"info": root / "info", "register": pair, "resume": run}
        self.count = 0

    def argv(self, command: str, folder: Path) -> tuple[list[str], Path]:
        """The command line of a case and where its damaged file goes."""
        if command == "info":
            return ["info", str(folder / "model.pt")], folder / "model.pt"
        if command == "register":
            model = folder / "model.pt"
            images = [str(folder / "fixed.png"), str(folder / "moving.png")]
            return ["register", "--model", str(model), *images, "--out", str(folder / "out")], model
        data, out = str(folder / "cells.npz"), str(folder / "r.pt")
        return [
            "train",
            data,
            *TINY,
            "--steps",
            "3",
            "--resume",
            "--out",
            out,
        ], folder / "r.last.pt"

    def prepare(self, variant: bytes, command: str) -> tuple[Path, list[str]]:
        """A fresh copy of the command's case folder holding the damaged file."""
        self.count += 1
        folder = self.root / f"case{self.count}"
        shutil.copytree(self.templates[command], folder)
        argv, target = self.argv(command, folder)
        target.write_bytes(variant)
        return folder, argv

    def run(self, name: str, variant: bytes, command: str, capsys) -> Outcome:
        """Run one command in-process on one damaged file."""
        folder, argv = self.prepare(variant, command)
        before = snapshot(folder)
        code, traceback = None, None
        try:
            code = main(argv)
        except BaseException as exc:  # what would reach the user as a traceback
            traceback = f"{type(exc).__name__}: {exc}"
        err = capsys.readouterr().err
        changed = snapshot(folder) != before
        outcome = Outcome(name, command, str(folder), code, err, traceback, changed)
        shutil.rmtree(folder)
        return outcome


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Cases:
    torch.set_num_threads(1)
    return Cases(tmp_path_factory.mktemp("fuzz"))


def _summary(outcomes: list[Outcome]) -> str:
    problems = [(o, o.problem()) for o in outcomes]
    bad = [f"{o.command} {o.variant}: {p}" for o, p in problems if p is not None]
    tracebacks = sum(o.traceback is not None for o in outcomes)
    accepted = sum(o.code == 0 for o in outcomes)
    head = f"{len(outcomes)} runs: {tracebacks} tracebacks, {accepted} exits 0, {len(bad)} wrong"
    return "\n".join([head, *bad[:40]])


@pytest.mark.slow
def test_every_damaged_model_is_refused_in_one_line_and_writes_nothing(cases, capsys):
    variants = damaged_variants(cases.checkpoint)
    assert len(variants) >= 200
    outcomes = [
        cases.run(name, data, command, capsys)
        for name, data in variants.items()
        for command in COMMANDS
    ]
    assert all(o.problem() is None for o in outcomes), _summary(outcomes)
    messages = {o.err for o in outcomes if o.variant.startswith("payload-flip")}
    assert all("is damaged" in m and "restore an intact copy" in m for m in messages), messages


def test_the_intact_checkpoint_passes_every_command(cases, capsys):
    outcomes = [cases.run("intact", cases.checkpoint, command, capsys) for command in COMMANDS]
    assert [o.code for o in outcomes] == [0, 0, 0], [o.err for o in outcomes]


@pytest.mark.slow
def test_the_installed_command_refuses_damaged_files_the_same_way(cases, capsys):
    variants = damaged_variants(cases.checkpoint)
    chosen = ["payload-flip-0", "header-pickle-flip-0", "directory-flip-0", "foreign-npz"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name, command in zip(chosen, [*COMMANDS, "info"], strict=True):
        expected = cases.run(name, variants[name], command, capsys)
        folder, argv = cases.prepare(variants[name], command)
        before = snapshot(folder)
        proc = subprocess.run([DEEPSIM, *argv], capture_output=True, text=True, env=env)
        assert proc.returncode == 2, (name, command, proc.stderr)
        assert "Traceback" not in proc.stderr
        shown = proc.stderr.replace(str(folder), "CASE")
        assert shown == expected.err.replace(expected.folder, "CASE"), (name, command)
        assert snapshot(folder) == before


def test_damaged_files_saved_before_checksums_never_give_a_traceback(cases, capsys):
    payload = torch.load(io.BytesIO(cases.checkpoint), weights_only=True)
    del payload["checksum"]
    legacy = io.BytesIO()
    torch.save(payload, legacy)  # what napari-deepsim wrote before this check
    outcomes = [
        cases.run(name, data, "info", capsys)
        for name, data in damaged_variants(legacy.getvalue()).items()
    ]
    assert not [o for o in outcomes if o.traceback is not None], _summary(outcomes)
    for o in outcomes:  # used with a note where nothing read was damaged, else refused
        lines = o.err.splitlines()
        assert len(lines) == 1, o
        assert lines[0].startswith("deepsim: note: " if o.code == 0 else "deepsim: error: "), o
