"""The fault-injecting upstream scripted to answer a golden set right or wrong, and gateways over it."""

from __future__ import annotations

import hashlib
import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx

from support.faults import FaultServer
from tests.gateway.harness import networked

ADMIN_KEY = "adm-key-0123456789"
EDITOR = {"authorization": f"Bearer {ADMIN_KEY}"}
KEY = "sk-golden-client"
ROWS = [
    {"name": "capital", "prompt": "Capital of France?", "expect": {"contains": "Paris"}, "critical": True},
    {"name": "sum", "prompt": "2+2?", "expect": {"equals": "4"}},
    {"name": "json", "prompt": "City as JSON", "expect": {"json_schema": {"type": "object", "required": ["city"]}}},
    {"name": "polite", "prompt": "Say hi", "expect": {"not_contains": "as an AI"}},
]
RIGHT = {"Capital of France?": "Paris.", "2+2?": "4", "City as JSON": '{"city": "Paris"}', "Say hi": "Hi!"}
WRONG = {"Capital of France?": "Lyon.", "2+2?": "5", "City as JSON": "Paris", "Say hi": "As an AI, hi."}


def script(faults: FaultServer, path: Path) -> Path:
    """The set written to ``path``; the gold backends scripted: two right, one wrong, one at the bar."""
    path.write_text("\n".join(json.dumps(row) for row in ROWS) + "\n")
    for name in ("gold-a", "gold-b", "gold-wrong", "gold-half"):
        faults.modes[name] = "script"
    faults.scripts["gold-a"] = faults.scripts["gold-b"] = RIGHT
    faults.scripts["gold-wrong"] = WRONG
    faults.scripts["gold-half"] = {**RIGHT, "2+2?": "5"}  # 3 of 4: at the bar
    return path


def rules(faults: FaultServer, golden: Path, primary: str) -> str:
    backends = "\n".join(
        f"  {name}: {{kind: openai, endpoint: '{faults.endpoint(name)}', model: m, health_check: {{enabled: false}}}}"
        for name in ("gold-a", "gold-b", "gold-wrong", "gold-half")
    )
    return f"""
backends:
{backends}
routes:
  general:
    backends: [{primary}]
    golden: {{set: {golden}, min_pass_ratio: 0.75, timeout_s: 20, concurrency: 2}}
default_route: general
router: {{kind: default}}
api_keys:
  - {{tenant: t1, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}"}}
"""


def replica(text: str, **settings: object) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """A gateway reaching its backends over the network, with the editor key."""
    return networked(text, admin_key=ADMIN_KEY, **settings)
