"""The README's results table is exactly what scripts/front_page.py renders from its file."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("front_page", ROOT / "scripts" / "front_page.py")
front_page = importlib.util.module_from_spec(spec)
spec.loader.exec_module(front_page)


def test_the_readme_holds_the_table_rendered_from_the_results_file():
    readme = (ROOT / "README.md").read_text()
    rows = front_page.read_results()
    assert readme == front_page.rendered_readme(readme, rows), "run scripts/front_page.py render"


def test_every_dataset_and_noise_shows_every_kind_of_row():
    rows = front_page.read_results()
    groups = {(r["dataset"], r["noise"]) for r in rows}
    assert groups and {d for d, _ in groups} <= set(front_page.DATASETS)
    for group in groups:
        kinds = [r["kind"] for r in rows if (r["dataset"], r["noise"]) == group]
        assert kinds == list(front_page.KINDS), (group, kinds)


def test_collect_picks_each_kind_and_the_best_of_several(tmp_path, monkeypatch):
    summary = tmp_path / "summary.csv"
    header = "model,dice,dice_sd,folding_percent,seconds_per_pair\n"
    rows = [
        "identity,0.5,0.01,0,0",
        "elastix,0.7,0.02,1.5,3",
        "ants-cc,0.72,0.02,0,100",
        "opt-ncc,0.8,0.03,0.1,2",
        "opt-deepsim+ncc,0.82,0.03,0.2,3",
        "em-2d,0.73,0.04,0.25,1",
        "em-2d+own,0.78,0.04,0.4,3",
        "em-2d+ncc,0.77,0.04,0.3,3",
    ]
    summary.write_text(header + "\n".join(rows) + "\n")
    monkeypatch.setattr(front_page, "RESULTS", tmp_path / "heldout.csv")
    front_page.collect([f"isbi:0:{summary}"])
    picked = front_page.read_results(tmp_path / "heldout.csv")
    assert [(r["kind"], r["method"]) for r in picked] == [
        ("identity", "identity"),
        ("elastix", "elastix"),
        ("ANTs SyN", "ants-cc"),
        ("best training-free", "opt-deepsim+ncc"),
        ("built-in model", "em-2d"),
        ("refined", "em-2d+own"),
    ]
    table = front_page.render_table(picked)
    assert "| refined | `em-2d+own` | 0.780 ± 0.040 | 0.40 | 3.0 |" in table
