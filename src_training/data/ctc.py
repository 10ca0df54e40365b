"""Cell Tracking Challenge data: fetch a training dataset once, read its sequences.

A Cell Tracking Challenge (CTC) training dataset unpacks to::

    PhC-C2DH-U373/
        01/t000.tif t001.tif ...          the frames of sequence 01
        01_GT/SEG/man_seg000.tif ...      gold-truth segmentations (some frames)
        01_ST/SEG/man_seg000.tif ...      silver-truth segmentations (most frames)
        02/ 02_GT/ 02_ST/                 sequence 02

:func:`fetch` downloads the archive only when asked (``download=True``; ``deepsim
fetch`` on the command line; the napari sample menu) with pooch, into a cache
(``$DEEPSIM_CACHE``, else the platform's user cache), and checks its SHA-256. The
Challenge does not publish checksums, so unless one is given the hash of the first
download is recorded next to the archive and every later use is checked against it.
:func:`read_sequence` reads one sequence folder (``.../01``) with the
segmentations of its ``_ST`` folder, or of ``_GT`` where there is no silver truth.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch

CACHE_ENV = "DEEPSIM_CACHE"
_FRAME = re.compile(r"^t(\d+)\.tiff?$")
_SEGMENTATION = re.compile(r"^man_seg_?(\d+)\.tiff?$")


@dataclass(frozen=True)
class PublicDataset:
    """A downloadable dataset: where it is and what a good copy hashes to.

    Attributes
    ----------
    name : str
        The folder the archive unpacks to.
    url : str
        The archive's address.
    sha256 : str or None
        Its expected SHA-256; None when the publisher gives none (the first download's
        hash is then recorded and enforced).
    citation : str
        Whom to cite.
    """

    name: str
    url: str
    sha256: str | None
    citation: str


DATASETS = {
    "PhC-C2DH-U373": PublicDataset(
        name="PhC-C2DH-U373",
        url="https://data.celltrackingchallenge.net/training-datasets/PhC-C2DH-U373.zip",
        sha256=None,
        citation=(
            "Maška et al., Bioinformatics 30(11), 2014; Ulman et al., Nature Methods 14, 2017 "
            "(Cell Tracking Challenge; U373 cells by S. Kumar, Berkeley)"
        ),
    ),
}


@dataclass
class Sequence:
    """The frames of one CTC sequence and their segmentations.

    Attributes
    ----------
    frames : numpy.ndarray
        ``(T, H, W)`` raw frames in time order.
    labels : numpy.ndarray or None
        ``(T, H, W)`` instance ids (0 background) of the frames in ``times``, or None.
    times : list of int
        The time index of every frame kept.
    source : str
        Which folders were read and what was left out.
    """

    frames: np.ndarray
    labels: np.ndarray | None
    times: list[int]
    source: str


def cache_dir() -> Path:
    """Return the download cache: ``$DEEPSIM_CACHE``, else the platform's user cache.

    The user cache is pooch's ``os_cache("napari-deepsim")``: ``~/.cache/napari-deepsim``
    on Linux, ``~/Library/Caches/napari-deepsim`` on macOS.
    """
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path(pooch.os_cache("napari-deepsim"))


def fetch(
    name: str,
    *,
    download: bool = False,
    cache: str | Path | None = None,
    sha256: str | None = None,
    report: Callable[[str], None] | None = None,
) -> Path:
    """Return the unpacked folder of a public dataset, downloading it once if asked.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`.
    download : bool
        Download the archive when the cache does not hold it; without it a missing
        archive is an error that says how to get it.
    cache : str or Path, optional
        Cache folder; :func:`cache_dir` by default.
    sha256 : str, optional
        Expected SHA-256 of the archive, overriding the registry's.
    report : callable, optional
        Receives one line per stage (download, check, unpack).

    Returns
    -------
    Path
        ``cache/<name>``, holding the sequence folders.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    entry = DATASETS[name]
    root = Path(cache) if cache is not None else cache_dir()
    archive = root / f"{entry.name}.zip"
    folder = root / entry.name
    say = report or (lambda _line: None)
    if not archive.is_file():
        if not download:
            raise ValueError(
                f"{entry.name} is not in the cache {root}; download it with `deepsim fetch "
                f"{entry.name}` (or put {archive.name} from {entry.url} there)"
            )
        root.mkdir(parents=True, exist_ok=True)
        say(f"downloading {entry.url}")
        _download(entry.url, archive, sha256 or entry.sha256)
    expected = (sha256 or entry.sha256 or _recorded(archive) or "").lower()
    say(f"checking {archive}")
    actual = file_sha256(archive)
    if expected and actual != expected:
        raise ValueError(
            f"{archive} has SHA-256 {actual} but {expected} was expected; the download is "
            "corrupt or the archive changed: delete it and fetch again"
        )
    if not expected:
        _record(archive, actual)
        say(f"recorded SHA-256 {actual}; later uses are checked against it")
    if not (folder / ".complete").is_file():
        say(f"unpacking into {folder}")
        _unpack(archive, root, entry.name)
    return folder


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    return pooch.file_hash(str(path), alg="sha256")


def _download(url: str, archive: Path, sha256: str | None) -> None:
    """Download with pooch, which writes to a temporary file and renames it when complete.

    A download whose hash differs from ``sha256`` is deleted by pooch; an interrupted or
    refused one leaves nothing behind.
    """
    known = f"sha256:{sha256.lower()}" if sha256 else None
    try:
        pooch.retrieve(url, known, fname=archive.name, path=archive.parent, progressbar=False)
    except ValueError as err:
        raise ValueError(
            f"the archive downloaded from {url} does not have SHA-256 {sha256}; the download "
            "is corrupt or the archive changed: fetch again, or pass the new checksum"
        ) from err
    except OSError as err:  # requests' errors are OSErrors: no connection, HTTP 404, ...
        raise OSError(
            f"could not download {url} ({type(err).__name__}); check the connection and "
            "retry, or put the archive in the cache folder by hand"
        ) from err


def _recorded(archive: Path) -> str | None:
    record = archive.with_name(archive.name + ".sha256")
    return record.read_text().split()[0] if record.is_file() else None


def _record(archive: Path, digest: str) -> None:
    archive.with_name(archive.name + ".sha256").write_text(f"{digest}  {archive.name}\n")


def _unpack(archive: Path, root: Path, name: str) -> None:
    """Extract the archive's ``name/`` folder, refusing members that leave it."""
    target = root / name
    staging = root / f".{name}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.namelist():
                resolved = (staging / member).resolve()
                if not resolved.is_relative_to(staging.resolve()):
                    raise ValueError(f"{archive} holds a file outside its folder: {member}")
            bundle.extractall(staging)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{archive} is not a valid zip archive ({err}); delete it") from err
    unpacked = staging / name
    if not unpacked.is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        raise ValueError(f"{archive} does not hold a folder {name}/; delete it and fetch again")
    shutil.rmtree(target, ignore_errors=True)
    unpacked.replace(target)
    shutil.rmtree(staging, ignore_errors=True)
    (target / ".complete").write_text("unpacked\n")


def is_sequence(folder: Path) -> bool:
    """Whether ``folder`` is a CTC sequence: ``tNNN.tif`` frames and a ``_GT``/``_ST`` sibling."""
    if not folder.is_dir() or not any(_FRAME.match(p.name) for p in folder.iterdir()):
        return False
    return any((folder.parent / f"{folder.name}_{kind}").is_dir() for kind in ("GT", "ST"))


def _numbered(folder: Path, pattern: re.Pattern[str]) -> dict[int, Path]:
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        match = pattern.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def read_sequence(folder: str | Path, *, labels: bool = True) -> Sequence:
    """Read a CTC sequence folder and its segmentations.

    Silver-truth segmentations (``<seq>_ST/SEG``) are used when they exist, otherwise
    the gold truth (``<seq>_GT/SEG``). When the segmentations cover only some frames,
    only those frames are kept (gold truth is sparse), and ``source`` says so.

    Parameters
    ----------
    folder : str or Path
        A sequence folder such as ``PhC-C2DH-U373/01``.
    labels : bool
        Read the segmentations; False keeps every frame without labels.

    Returns
    -------
    Sequence
        Frames, instance labels and the time indices kept.
    """
    from src_training.data.reading import read_image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}; give a sequence folder such as .../01")
    frames = _numbered(folder, _FRAME)
    if not frames:
        raise ValueError(f"{folder} holds no CTC frames named t000.tif, t001.tif, ...")
    segmentations: dict[int, Path] = {}
    used = "no segmentations"
    if labels:
        for kind in ("ST", "GT"):
            segmentations = _numbered(
                folder.parent / f"{folder.name}_{kind}" / "SEG", _SEGMENTATION
            )
            if segmentations:
                used = f"{folder.name}_{kind}/SEG"
                break
    unknown = sorted(set(segmentations) - set(frames))
    if unknown:
        raise ValueError(
            f"{used} has segmentations of frames {unknown[:5]} that {folder} does not have"
        )
    times = list(segmentations) if segmentations else list(frames)
    images = np.stack([read_image(frames[t])[0] for t in times])
    label_maps = None
    if segmentations:
        label_maps = np.stack([read_image(segmentations[t], as_label=True)[0] for t in times])
        if label_maps.shape != images.shape:
            raise ValueError(
                f"the segmentations in {used} have shape {label_maps.shape[1:]} but the frames "
                f"{images.shape[1:]}"
            )
    note = f"{folder} (Cell Tracking Challenge), {len(times)} of {len(frames)} frames, {used}"
    if segmentations and len(times) < len(frames):
        note += "; frames without a segmentation left out"
    return Sequence(images, label_maps, times, note)
