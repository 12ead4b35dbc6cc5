"""The rules file on disk, as a replica watches it (edits, ConfigMap symlink swaps, SIGHUP)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("turnout")


class RulesFile:
    """The rules file as last seen: a change is a different stat (through symlinks) and a different text."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self._stat: tuple[int, ...] | None = None
        self.text = text
        self.unsaved: str | None = None
        """A text the store could not take (it was down): tried again on every poll until it can."""

    def read_now(self) -> str:
        """The file's text, whatever it holds: bytes that are not UTF-8 stay visible (as surrogates)
        so the YAML reader refuses them as a rules problem, audited and counted like any other."""
        return self.path.read_bytes().decode(errors="surrogateescape")

    def read(self) -> str | None:
        """The file's text when it changed since the last call; ``None`` otherwise or when unreadable."""
        try:
            found = os.stat(self.path)
            stat = (found.st_dev, found.st_ino, found.st_mtime_ns, found.st_size)
            if stat == self._stat:
                return None
            text = self.read_now()
        except OSError as exc:
            log.warning("rules file %s cannot be read: %s", self.path, exc.strerror)
            return None
        self._stat = stat
        if text == self.text:
            return None
        self.text = text
        return text
