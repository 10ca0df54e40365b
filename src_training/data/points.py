"""Points tables as CSV, in the format napari saves a Points layer.

napari writes ``index,axis-0,axis-1[,axis-2][,property...]``: one row per point, its
coordinates in array axis order (rows, then columns; planes first in 3D), in the layer's
data coordinates (voxels when the layer has no scale). A table is read with every
column kept as text, so that writing it back changes only the coordinates.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class PointsTable:
    """A CSV table of points: its header, its rows as text and the coordinates.

    Attributes
    ----------
    header : list of str
        The column names.
    rows : list of list of str
        Every row's cells, as in the file.
    columns : list of int
        Positions of ``axis-0``, ``axis-1``, ... in ``header``.
    """

    header: list[str]
    rows: list[list[str]]
    columns: list[int]

    @property
    def coordinates(self) -> np.ndarray:
        """The ``(N, ndim)`` float64 coordinates, ``axis-0`` first."""
        values = [[float(row[c]) for c in self.columns] for row in self.rows]
        return np.asarray(values, np.float64).reshape(len(self.rows), len(self.columns))


def read_points_csv(path: str | Path, ndim: int) -> PointsTable:
    """Read a points CSV with one ``axis-N`` column per image axis, checking every value.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    ndim : int
        Number of image axes the points must have.

    Returns
    -------
    PointsTable
        The table.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}; check the path")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(
            f"could not read the points file {path.name} ({err}); save it as CSV"
        ) from None
    header = [name.strip() for name in lines[0]] if lines else []
    axes = sorted(name for name in header if name.startswith("axis-"))
    wanted = [f"axis-{i}" for i in range(ndim)]
    if not set(wanted) <= set(header):
        raise ValueError(
            f"the points file {path.name} has no {', '.join(wanted)} columns (its header is "
            f"{','.join(header) or 'empty'}); give a CSV as napari saves Points layers, "
            f"e.g. index,{','.join(wanted)}"
        )
    if len(axes) != ndim:
        raise ValueError(
            f"the points file {path.name} has {len(axes)} axis columns but the images are "
            f"{ndim}D; give one axis-N column per image axis"
        )
    columns = [header.index(name) for name in wanted]
    rows = [row for row in lines[1:] if any(cell.strip() for cell in row)]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ValueError(
                f"line {number} of {path.name} has {len(row)} values but the header "
                f"{len(header)} columns; fix the line"
            )
        for name, column in zip(wanted, columns, strict=True):
            if not _is_number(row[column]):
                raise ValueError(
                    f"line {number} of {path.name} has {row[column]!r} as {name}, not a "
                    "finite number; fix the value"
                )
    return PointsTable(header, rows, columns)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def write_points_csv(path: str | Path, table: PointsTable, coordinates: np.ndarray) -> Path:
    """Write a table with new coordinates, every other column unchanged.

    Parameters
    ----------
    path : str or Path
        Destination CSV file.
    table : PointsTable
        The table read from the input.
    coordinates : numpy.ndarray
        ``(N, ndim)`` new coordinates, in the order of ``table.columns``.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(table.header)
        for row, point in zip(table.rows, coordinates, strict=True):
            cells = list(row)
            for column, value in zip(table.columns, point, strict=True):
                cells[column] = repr(round(float(value), 6))
            writer.writerow(cells)
    return path
