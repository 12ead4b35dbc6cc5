"""Corrections by example in the gateway, with the shipped task router: a family of prompts given
a route by two examples, applied live, followed by a second replica, rolled back; tenant rules
first; decisions never outliving their rules version; validation at the lines; the examples file
part of the version; ``router eval --examples`` deciding as the gateway does.

The family is one caller's template (in-character chat from a persona) sent to a route the
classifier has no label for, ``roleplay``: whatever the shipped model does with these prompts,
only examples can route them there, and every other prompt must keep the decision it had.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.gateway.harness import AUTH, KEY, LIMITED_KEY, chat_body, gateway

ADMIN_KEY = "adm-key-0123456789"
EDITOR = {"authorization": f"Bearer {ADMIN_KEY}"}
OTHER_TENANT = {"authorization": f"Bearer {LIMITED_KEY}"}
ROOT = Path(__file__).resolve().parents[2]

PERSONAS = [
    ("I grew up on a farm in Ohio.\nI keep bees.\nI hate cold weather.", "Hi there, what keeps you busy these days?"),
    ("I am a retired firefighter.\nI collect vinyl records.\nMy wife passed away last year.", "Good morning!"),
    ("I am a nurse who works nights.\nI have three dogs.\nI love horror movies.", "Hey, long shift today?"),
    ("I play the violin in an orchestra.\nI am vegan.\nI moved to Berlin two years ago.", "Where are you from?"),
    ("I own a small bakery.\nI wake up at 4 am every day.\nMy favorite color is yellow.", "Do you like your job?"),
    (
        "I am a chemistry teacher.\nI run marathons.\nI have never left my home country.",
        "What did you do this weekend?",
    ),
    ("I am a truck driver.\nI listen to audiobooks all day.\nI have two grandchildren.", "You must see a lot!"),
    ("I study marine biology.\nI am afraid of sharks.\nI surf every weekend.", "What do you love about the sea?"),
]
FAMILY = [
    f"Continue this conversation as User 2, whose persona is:\n{persona}\n\nUser 1: {line}\nUser 2:"
    for persona, line in PERSONAS
]
EXAMPLES, HELD_OUT = FAMILY[:2], FAMILY[2:]
OTHERS = [
    "Read the passage and answer: who founded the company?\nPassage: Acme Corp was founded in 1921 by Helen Park.",
    "From the text below, list every date mentioned.\nText: The treaty was signed on 4 May 1921 and ratified in 1922.",
    "Conversation:\nUser 1: I moved to Berlin.\nUser 2: For work?\nUser 1: Yes, I play violin.\nWhat does User 1 play?",
    "Write a Python function that returns the n-th Fibonacci number.",
    "A train travels 120 km in 1.5 hours. What is its average speed in km/h?",
    "Summarize in one sentence: The council met on Tuesday and, after three hours, voted to fund parks.",
    "Write a short poem about autumn leaves.",
    "What is the capital of Australia?",
    "Is the sentiment of this review positive or negative? 'The food was cold and the waiter rude.'",
]
LABELS = ("classification", "code", "creative", "extraction", "math", "qa", "summarization")


def rules(router_extra: str = "", rules_section: str = "") -> str:
    routes = "\n".join(f"  {name}: {{backends: [primary]}}" for name in (*LABELS, "general", "roleplay"))
    return f"""
backends:
  primary: {{kind: openai, endpoint: "http://primary/v1", model: primary-model}}
routes:
{routes}
default_route: general
router:
  kind: classifier
  example_threshold: 0.85
{router_extra}
{rules_section}
api_keys:
  - {{tenant: t1, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}"}}
  - {{tenant: t2, sha256: "{hashlib.sha256(LIMITED_KEY.encode()).hexdigest()}"}}
"""


def inline(examples: list[str], route: str = "roleplay") -> str:
    items = "".join(f"\n    - route: {route}\n      prompt: {json.dumps(p)}" for p in examples)
    return f"  examples:{items}"


WITHOUT = rules()
WITH = rules(inline(EXAMPLES))
TENANT_RULE = "rules:\n  - {name: t1-to-qa, when: {tenants: [t1]}, route: qa}"


async def explained(client: httpx.AsyncClient, prompt: str, tenant: str = "t2") -> dict[str, Any]:
    answer = await client.post(
        "/admin/route/explain", json={"prompt": prompt}, headers={**EDITOR, "x-turnout-tenant": tenant}
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def routed(client: httpx.AsyncClient, prompt: str, auth: dict[str, str] = OTHER_TENANT) -> str:
    body = chat_body(messages=[{"role": "user", "content": prompt}])
    answer = await client.post("/v1/chat/completions", json=body, headers=auth)
    assert answer.status_code == 200, answer.text
    return answer.headers["x-turnout-route"]


async def apply(client: httpx.AsyncClient, text: str) -> int:
    current = (await client.get("/admin/rules", headers=EDITOR)).json()["version"]
    answer = await client.put("/admin/rules", content=text, headers={**EDITOR, "if-match": f'"{current}"'})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["version"])


async def decisions(client: httpx.AsyncClient, prompts: list[str]) -> list[tuple[str, str]]:
    return [((e := await explained(client, p))["route"], e["decided_by"]) for p in prompts]


async def test_two_examples_move_exactly_their_family_and_a_rollback_restores_it() -> None:
    async with gateway(rules=WITHOUT, admin_key=ADMIN_KEY) as client:
        for prompt in FAMILY:  # decided, and kept for reuse, under version 1
            assert await routed(client, prompt) != "roleplay"
        family_before = await decisions(client, HELD_OUT)
        others_before = await decisions(client, OTHERS)
        version = await apply(client, WITH)
        for prompt in HELD_OUT:
            assert await routed(client, prompt) == "roleplay"  # not the decision kept under version 1
            found = await explained(client, prompt)
            assert found["decided_by"] == "example"
            assert found["examples"][0]["route"] == "roleplay"
            assert found["examples"][0]["similarity"] >= 0.85
        assert await decisions(client, OTHERS) == others_before
        shown = await explained(client, OTHERS[0])
        assert [e["route"] for e in shown["examples"]] == ["roleplay", "roleplay"]  # nearest shown, not taken
        assert all(e["similarity"] < 0.85 for e in shown["examples"])
        rollback = await client.post(
            "/admin/rules/rollback", json={"version": version - 1, "message": "undo"}, headers=EDITOR
        )
        assert rollback.status_code == 200, rollback.text
        assert await decisions(client, HELD_OUT) == family_before
        assert all([await routed(client, p) != "roleplay" for p in HELD_OUT])


async def test_tenant_rules_match_before_examples() -> None:
    async with gateway(rules=rules(inline(EXAMPLES), TENANT_RULE), admin_key=ADMIN_KEY) as client:
        assert await routed(client, HELD_OUT[0], AUTH) == "qa"  # tenant t1's rule
        assert await routed(client, HELD_OUT[0], OTHER_TENANT) == "roleplay"
        assert (await explained(client, HELD_OUT[0], "t1"))["decided_by"] == "rule:t1-to-qa"


async def test_a_fix_applied_on_one_replica_is_served_by_the_other_within_2_s(redis_url: str) -> None:
    admin = aioredis.from_url(redis_url)
    await admin.flushdb()
    await admin.aclose()
    settings = {"redis_url": redis_url, "admin_key": ADMIN_KEY}
    async with gateway(rules=WITHOUT, **settings) as one, gateway(rules=WITHOUT, **settings) as two:
        assert await routed(two, HELD_OUT[0]) != "roleplay"
        version = await apply(one, WITH)
        assert await served_within(two, HELD_OUT[0], "roleplay", 2.0)
        await one.post("/admin/rules/rollback", json={"version": version - 1, "message": "undo"}, headers=EDITOR)
        assert await served_within(two, HELD_OUT[0], "not roleplay", 2.0)


async def served_within(client: httpx.AsyncClient, prompt: str, route: str, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        found = await routed(client, prompt)
        if found == route or (route == "not roleplay" and found != "roleplay"):
            return True
        await asyncio.sleep(0.05)
    return False


UNKNOWN_ROUTE = inline(["fine", "also fine"], route="nowhere")
BLANK_PROMPT = '  examples:\n    - {route: qa, prompt: "ok"}\n    - {route: qa, prompt: "  "}'
TOO_MANY = "  max_examples: 1\n" + inline(["one", "two"], route="qa")


@pytest.mark.parametrize(
    ("router_extra", "expected", "complaint"),
    [
        (
            UNKNOWN_ROUTE,
            [("router.examples[0].route", 'prompt: "fine"'), ("router.examples[1].route", "also fine")],
            "unknown route 'nowhere'",
        ),
        (BLANK_PROMPT, [("router.examples[1].prompt", 'prompt: "  "')], "empty"),
        (TOO_MANY, [("router.examples[1]", '"two"')], "one example too many"),
        (
            "  example_thresholds: {nowhere: 0.5}",
            [("router.example_thresholds.nowhere", "nowhere: 0.5")],
            "unknown route",
        ),
    ],
)
async def test_bad_inline_examples_are_refused_at_their_lines(
    router_extra: str, expected: list[tuple[str, str]], complaint: str
) -> None:
    """Each problem at its path, on the line of the example (or its field) that has it."""
    text = rules(router_extra)
    async with gateway(rules=WITHOUT, admin_key=ADMIN_KEY) as client:
        answer = await client.post("/admin/rules/validate", content=text, headers=EDITOR)
    assert answer.status_code == 422
    errors = answer.json()["errors"]
    lines = text.splitlines()
    wanted = [(path, next(n for n, line in enumerate(lines, 1) if marker in line)) for path, marker in expected]
    found = [(e["path"], e["line"]) for e in errors]
    assert [path for path, _ in found] == [path for path, _ in wanted], errors
    for (_, line), (_, near) in zip(found, wanted, strict=True):
        assert near - 1 <= line <= near, errors  # the item's first line, or the field's own
    assert complaint in errors[0]["message"]


@pytest.mark.parametrize(
    ("lines", "complaint"),
    [
        (['{"route": "roleplay", "prompt": "ok"}', "{not json"], "line 2"),
        (
            ['{"route": "roleplay", "prompt": "ok"}', '{"route": "nowhere", "prompt": "x"}'],
            "line 2: unknown route 'nowhere'",
        ),
        (['{"route": "roleplay", "prompt": "ok"}', "", '{"route": "qa", "prompt": ""}'], "line 3"),
        ([json.dumps({"route": "qa", "prompt": f"q{i}"}) for i in range(3)], "line 3: one example too many"),
    ],
)
async def test_a_bad_examples_file_is_refused_at_its_line(tmp_path: Path, lines: list[str], complaint: str) -> None:
    examples = tmp_path / "examples.jsonl"
    examples.write_text("\n".join(lines) + "\n")
    text = rules(f"  max_examples: 2\n  examples_file: {examples}")
    async with gateway(rules=WITHOUT, admin_key=ADMIN_KEY) as client:
        answer = await client.post("/admin/rules/validate", content=text, headers=EDITOR)
        missing = await client.post(
            "/admin/rules/validate", content=rules("  examples_file: /nowhere.jsonl"), headers=EDITOR
        )
    assert answer.status_code == 422
    (error,) = answer.json()["errors"]
    assert error["path"] == "router.examples_file"
    assert error["line"] == next(n for n, line in enumerate(text.splitlines(), 1) if "examples_file" in line)
    assert complaint in error["message"], error
    assert missing.status_code == 422
    assert "cannot be read" in missing.json()["errors"][0]["message"]


async def test_the_examples_files_content_is_part_of_the_version(tmp_path: Path) -> None:
    from gateway.app import create_app
    from gateway.settings import Settings
    from tests.gateway.harness import echo_upstream

    examples = tmp_path / "examples.jsonl"
    examples.write_text(json.dumps({"route": "roleplay", "prompt": EXAMPLES[0]}) + "\n")
    config = tmp_path / "rules.yaml"
    config.write_text(rules(f"  examples_file: {examples}"))
    upstream = httpx.AsyncClient(transport=httpx.MockTransport(echo_upstream))
    app = create_app(Settings(config=config, admin_key=ADMIN_KEY, rules_poll_s=0.1), http_client=upstream)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            assert await routed(client, HELD_OUT[0]) == "roleplay"
            examples.write_text(json.dumps({"route": "qa", "prompt": EXAMPLES[0]}) + "\n")
            for _ in range(100):
                if await routed(client, HELD_OUT[0]) == "qa":
                    break
                await asyncio.sleep(0.05)
            history = (await client.get("/admin/rules/history", headers=EDITOR)).json()
    await upstream.aclose()
    assert [v["version"] for v in history] == [2, 1]
    assert history[0]["message"].startswith("examples file changed: ")
    assert history[0]["golden"]["@examples"] == hashlib.sha256(examples.read_bytes()).hexdigest()
    assert history[0]["golden"]["@examples"] != history[1]["golden"]["@examples"]


async def test_router_eval_with_examples_decides_as_the_gateway_does(tmp_path: Path) -> None:
    examples = tmp_path / "examples.jsonl"
    examples.write_text("".join(json.dumps({"route": "roleplay", "prompt": p}) + "\n" for p in EXAMPLES))
    data = tmp_path / "data.jsonl"
    prompts = HELD_OUT + OTHERS
    data.write_text("".join(json.dumps({"prompt": p, "label": "roleplay"}) + "\n" for p in prompts))
    command = [sys.executable, "-m", "gateway.cli", "router", "eval", "--examples", str(examples), "--data", str(data)]
    command += ["--example-threshold", "0.85", "--json", "--rows"]
    ran = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(ran.stdout)
    async with gateway(rules=rules(f"  examples_file: {examples}"), admin_key=ADMIN_KEY) as client:
        served = [await explained(client, p) for p in prompts]
    general = {"out_of_scope": "general"}  # eval's name for abstaining; the gateway's default route
    assert [(general.get(d["route"], d["route"]), d["decided_by"]) for d in report["decisions"]] == [
        (s["route"], s["decided_by"]) for s in served
    ]
    assert report["decided_by"]["example"] == len(HELD_OUT)
    assert report["examples"] == 2
