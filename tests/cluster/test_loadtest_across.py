"""``haven loadtest --url A --url B``: each room's members spread over the processes of a
cluster, a dropped member resuming on the next process; the books stay exact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from haven.loadtest import runner
from haven.loadtest.slo import parse
from haven.loadtest.spec import LoadSpec

from .clusterkit import start_cluster
from .natskit import NatsServer, nats_server


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[NatsServer]:
    with nats_server(tmp_path) as s:
        yield s


@pytest.mark.parametrize("kind", ["direct", "group"])
async def test_loss_accounting_stays_exact_across_processes(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path, kind: str
) -> None:
    a, b = await start_cluster(nursery, bus.url, tmp_path, 2)
    members = 2 if kind == "direct" else 3
    spec = LoadSpec(
        url=a.url, more_urls=(b.url,), key=a.public_key, kind=kind, rooms=4,
        members=members, rate=5.0, duration=3.0, settle=5.0, churn_drop=0.3,
    )  # fmt: skip
    rep = await runner.run(spec, runner.RunOptions(workers=0, slo=parse("loss=0,errors=0")))
    assert rep["sent"] > 0
    assert rep["churn"].get("drops", 0) > 0
    assert rep["churn"].get("resumes") == rep["churn"].get("drops")
    assert rep["expected"] == rep["delivered"]
    assert (rep["lost"], rep["duplicated"], rep["unexpected"], rep["errors"]) == (0, 0, 0, 0)
    # The rooms spanned both processes: the sends of members away from their room's
    # home (about half of them; a resumed member may land on the home) crossed the bus.
    forwarded = a.relay.cluster.forwarded + b.relay.cluster.forwarded
    assert forwarded >= rep["sent"] // 4
