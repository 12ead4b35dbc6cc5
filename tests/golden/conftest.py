from __future__ import annotations

from pathlib import Path

import pytest

from support.faults import FaultServer
from tests.golden.scripted import script


@pytest.fixture
def golden(tmp_path: Path, faults: FaultServer) -> Path:
    """A golden set of four rows, and the fault server's gold backends scripted to answer it."""
    return script(faults, tmp_path / "general.jsonl")
