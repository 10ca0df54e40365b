"""A local stand-in for a Cell Tracking Challenge archive, served on the loopback address."""

import functools
import http.server
import threading
import zipfile
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import tifffile

from src_training.data import ctc
from src_training.data.samples import noisy_cell_sequence

NAME = "PhC-C2DH-U373"
GT_TIMES = (1, 3)


def write_dataset(root):
    """Sequence 01 with silver truth on every frame; 02 with sparse gold truth only."""
    seq = noisy_cell_sequence(n_frames=5, size=32)
    for name in ("01", "02"):
        (root / name).mkdir(parents=True)
        for t, frame in enumerate(seq.images):
            tifffile.imwrite(root / name / f"t{t:03d}.tif", (frame * 1000).astype(np.uint16))
    (root / "01_ST" / "SEG").mkdir(parents=True)
    for t, label in enumerate(seq.labels):
        tifffile.imwrite(root / "01_ST" / "SEG" / f"man_seg{t:03d}.tif", label.astype(np.uint16))
    (root / "02_GT" / "SEG").mkdir(parents=True)
    for t in GT_TIMES:
        tifffile.imwrite(root / "02_GT" / "SEG" / f"man_seg{t:03d}.tif", seq.labels[t])
    return seq


@contextmanager
def http_server(folder):
    """Serve ``folder`` over HTTP on 127.0.0.1; yield its base URL and the paths requested."""
    requested = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *_args):
            pass

    handler = functools.partial(Handler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()


def serve_archive(tmp_path, monkeypatch, base_url):
    """Zip the layout into ``tmp_path`` (served at ``base_url``) in place of the Challenge's."""
    source = tmp_path / "source"
    seq = write_dataset(source / NAME)
    path = tmp_path / "served.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        for file in sorted((source / NAME).rglob("*")):
            bundle.write(file, file.relative_to(source).as_posix())
    entry = replace(ctc.DATASETS[NAME], url=f"{base_url}/served.zip")
    monkeypatch.setitem(ctc.DATASETS, NAME, entry)
    return path, seq
