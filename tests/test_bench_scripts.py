"""The bench scripts stop at once without the shared files and never overwrite figures on failure."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(
    "script",
    [
        "bench/overhead.sh",
        "bench/cache_hits.sh",
        "bench/workers.sh",
        "bench/api_overhead.sh",
        "bench/profile_spy.sh",
        "bench/rollout_overhead.sh",
        "bench/tracing_overhead.sh",
        "bench/guardrail_overhead.sh",
    ],
)
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


@pytest.mark.parametrize(
    ("produced", "status", "kept"),
    [("", 0, "old figures\n"), ("header, then the run died\n", 1, "old figures\n"), ("new\n", 0, "new\n")],
)
def test_results_are_replaced_only_by_a_whole_run(produced: str, status: int, kept: str, tmp_path: Path) -> None:
    out = tmp_path / "figures.txt"
    out.write_text("old figures\n")
    script = f'source bench/common.sh; run() {{ printf "%s" "$1"; return {status}; }}; write_results "{out}" run "$1"'
    subprocess.run(
        ["bash", "-c", script, "_", produced],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )
    assert out.read_text() == kept
    assert [p.name for p in tmp_path.iterdir()] == ["figures.txt"]
