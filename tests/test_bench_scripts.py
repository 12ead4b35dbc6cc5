"""The bench scripts stop at once without the shared files and never overwrite figures on failure."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("script", ["bench/overhead.sh", "bench/cache_hits.sh"])
def test_missing_shared_files_stop_the_script_at_once_saying_where_to_get_them(script: str, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in (ROOT / "bench" / "results").iterdir()}
    result = subprocess.run(
        ["bash", str(ROOT / script)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "SHARED": str(tmp_path / "nowhere"), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "SHARED=" in result.stderr
    assert {p: p.read_bytes() for p in (ROOT / "bench" / "results").iterdir()} == before


@pytest.mark.parametrize(("produced", "kept"), [("", "old figures\n"), ("new figures\n", "new figures\n")])
def test_results_are_replaced_only_by_a_whole_run(produced: str, kept: str, tmp_path: Path) -> None:
    out = tmp_path / "figures.txt"
    out.write_text("old figures\n")
    subprocess.run(
        ["bash", "-c", f'source bench/common.sh; printf "%s" "$1" | write_results "{out}"', "_", produced],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )
    assert out.read_text() == kept
    assert [p.name for p in tmp_path.iterdir()] == ["figures.txt"]
