"""The top of a collapsed-stack profile (py-spy's ``--format raw``): each function by the share of
samples whose stack it is on (inclusive) and by the share it is the innermost frame of (its own).
A coroutine's stack starts where its task resumed it; samples in the event loop's own C code (uvloop:
polling, socket writes) show only the frame that started the loop.
    .venv/bin/python -m bench.collapsed_top FILE [N]
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
TRIM = ("/work/main/", ".venv/lib/python3.11/site-packages/", "/lib/python3.11/")


def where(frame: str) -> str:
    """``function (file)`` with the file shortened to the package, lines dropped: one row per function."""
    found = FRAME.match(frame)
    if found is None:
        return frame
    file = found["file"]
    for prefix in TRIM:
        file = file.split(prefix, 1)[-1]
    return f"{found['function']} ({file})"


def main() -> None:
    path, top = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = [where(f) for f in stack.split(";")]
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    print(f"# {total} samples\n\n## on the stack (inclusive)")
    for frame, samples in inclusive.most_common(top):
        print(f"{100 * samples / total:6.1f} %  {frame}")
    print("\n## own (innermost frame)")
    for frame, samples in own.most_common(top):
        print(f"{100 * samples / total:6.1f} %  {frame}")


if __name__ == "__main__":
    main()
