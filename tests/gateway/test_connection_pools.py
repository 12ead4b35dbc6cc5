"""Each backend has a connection pool of its own, sized from its own spec, kept across rules swaps
while its identity stays the same."""

from __future__ import annotations

import asyncio

from support.fault_rules import MESSAGES, route_rules
from support.faults import FaultServer
from tests.gateway.resilience_harness import sdk_gateway


async def test_a_hanging_backend_holds_only_its_own_connections(faults: FaultServer) -> None:
    hanging, healthy = faults.backend("hang"), faults.backend("ok")
    extra = f"aliases: {{to-hanging: {hanging[0]}, to-healthy: {healthy[0]}}}\n"
    rules = route_rules([hanging, healthy], backend=", max_connections: 2", extra=extra)
    async with sdk_gateway(rules) as gw:
        stuck = [
            asyncio.create_task(gw.client.chat.completions.create(model="to-hanging", messages=MESSAGES))
            for _ in range(4)  # more than the sum of both pools: a shared pool would be full
        ]
        for _ in range(200):
            if faults.count(hanging[0]) >= 2:
                break
            await asyncio.sleep(0.05)
        assert faults.count(hanging[0]) == 2  # its own two connections; the others queue in its pool
        answer = await gw.client.with_options(timeout=10).chat.completions.create(model="to-healthy", messages=MESSAGES)
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
    assert answer.choices[0].message.content
