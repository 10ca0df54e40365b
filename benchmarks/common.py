"""What every benchmark shares: the machine's description, timing, peak memory, results.

Timing: ``time.perf_counter`` around the measured call, after warm-up calls, reported
as the median (and minimum) of the repeats. The 1-minute load average is recorded with
every result: the machine may be shared, and a load above its core count means the
timings are inflated.

Peak memory on the CPU: tracemalloc does not see torch's allocations, so each memory
measurement runs in a fresh Python process (:func:`run_isolated`). Just before the
measured work, :func:`start_peak` resets the kernel's high-water mark of the resident
set size (writing 5 to ``/proc/self/clear_refs``) and notes the resident size; after
it, the high-water mark (``VmHWM``) is the peak during the work, and the peak minus
the size before is the memory the work added on top of the interpreter, torch, the
model and the data. (``getrusage``'s ``ru_maxrss`` is the same counter without the
reset: it would also count transient peaks of loading the data.)
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = Path(os.environ.get("DEEPSIM_DATA", ROOT.parent / "shared" / "data"))
RUNS = Path(os.environ.get("DEEPSIM_RUNS", ROOT.parent / "runs"))


def machine() -> dict[str, Any]:
    """Describe the machine and software a result was measured with."""
    cpu, flags = "unknown", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    vector = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": f"{cpu} ({', '.join(vector)})" if vector else cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 2**20, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def load() -> float:
    """The 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def start_peak() -> float:
    """Reset the peak resident set size to the current one and return it, in MiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mib("VmRSS")


def peak_rss() -> float:
    """Peak resident set size since the last :func:`start_peak`, in MiB."""
    return _status_mib("VmHWM")


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Median and minimum seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "repeats": repeats,
        "load": load(),
    }


def run_isolated(target: str, timeout: float = 1200, **kwargs: Any) -> dict[str, Any]:
    """Run ``module:function(**kwargs)`` in a fresh Python process and return its dict.

    The function returns a dict (with ``rss_before_mib`` from :func:`start_peak` called
    just before its measured work); the child adds ``peak_rss_mib`` and ``added_mib``.
    """
    command = [sys.executable, "-m", "benchmarks.common", target, json.dumps(kwargs)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{target}({kwargs}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(target: str, arguments: str) -> None:
    module, name = target.split(":")
    result = getattr(importlib.import_module(module), name)(**json.loads(arguments))
    peak = peak_rss()
    result["peak_rss_mib"] = round(peak, 1)
    result["added_mib"] = round(peak - result.pop("rss_before_mib"), 1)
    print(json.dumps(result))


def save(name: str, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Write ``results/<name>.json`` and append it to ``results/history.jsonl``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "machine": machine(), "rows": rows, **extra}
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    with open(RESULTS / "history.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")
    return record


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A markdown table of ``rows``: ``columns`` are ``(key, header)`` pairs."""
    lines = [
        "| " + " | ".join(header for _, header in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key)) for key, _ in columns) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
