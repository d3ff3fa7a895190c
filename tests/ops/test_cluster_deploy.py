"""deploy/ for a cluster, checked by the real tools and run for real: the three NATS node
configs (``nats-server -t``, then a three-node bus started from them with TLS and a
password), the relay unit (``systemd-analyze verify``), the relay's cluster config
(``haven serve --check-config``), and two relays on different nodes sharing a room."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from prometheus_client import CollectorRegistry

from haven import client
from haven.cluster.seal import ClusterKey
from haven.protocol.messages import Deliver
from haven.relay import config as config_mod
from haven.relay import server
from haven.relay.keys import write_cluster_key
from tests.cluster.clusterkit import until
from tests.cluster.natskit import free_port, nats_server_binary

from .test_deploy_tools import DEPLOY, make_cert, run, tool

PASSWORD = "a-long-random-relay-password"


def nats_node_config(i: int, tmp: Path, ports: dict[str, list[int]]) -> Path:
    """deploy/nats/nats-<i>.conf with the test certificate (made once per directory:
    every node and relay must see the same one) and free loopback ports."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    if not cert.exists():
        make_cert(tmp)
    text = (DEPLOY / "nats" / f"nats-{i}.conf").read_text()
    text = text.replace("/etc/nats/tls/server.pem", str(cert))
    text = text.replace("/etc/nats/tls/server-key.pem", str(key))
    text = text.replace("/etc/nats/tls/ca.pem", str(cert))
    text = text.replace('"0.0.0.0:4222"', f'"127.0.0.1:{ports["client"][i - 1]}"')
    text = text.replace('"0.0.0.0:6222"', f'"127.0.0.1:{ports["route"][i - 1]}"')
    text = text.replace('"127.0.0.1:8222"', f'"127.0.0.1:{ports["http"][i - 1]}"')
    for j in (1, 2, 3):
        text = text.replace(f"tls://nats-{j}.haven.internal:6222",
                            f"tls://127.0.0.1:{ports['route'][j - 1]}")  # fmt: skip
    path = tmp / f"nats-{i}.conf"
    path.write_text(text)
    return path


@dataclass
class Secrets:
    """What every relay of the test cluster shares: the bus's CA, the cluster key, the
    relay key and the NATS password file."""

    cert: Path
    cluster_key: Path
    password: Path
    key: X25519PrivateKey

    @classmethod
    def make(cls, tmp: Path) -> Secrets:
        cert, _, _ = make_cert(tmp)  # the nodes' certificate (nats_node_config reuses it)
        cluster_key = tmp / "cluster.key"
        write_cluster_key(cluster_key, ClusterKey.generate())
        return cls(cert, cluster_key, password_file(tmp / "nats.password", PASSWORD),
                   X25519PrivateKey.generate())  # fmt: skip

    async def relay(self, nursery: trio.Nursery, cluster: str, password: Path | None = None,
                    ) -> Any:  # fmt: skip
        config = config_mod.Config(
            port=0, metrics_port=None, cluster=cluster, cluster_key=self.cluster_key,
            nats_user="haven-relay", nats_password_file=password or self.password,
            nats_ca_file=self.cert,
        )  # fmt: skip
        return await nursery.start(
            partial(server.serve, config, static_key=self.key, registry=CollectorRegistry())
        )


def password_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


async def share_a_room(a: Any, b: Any, body: bytes) -> None:
    """A member on ``b`` sends ``body`` into a room ``a`` holds; it arrives."""
    async with (
        client.connect(a.url, a.public_key) as alice,
        client.connect(b.url, b.public_key) as bob,
    ):
        room = await alice.create_room()
        theirs = await bob.join(room.code)
        await theirs.send(body)
        with trio.fail_after(10):
            async for event in room.events():
                if isinstance(event, Deliver):
                    assert event.body == body
                    return


def test_the_three_node_configs_pass_nats_server_t(tmp_path: Path) -> None:
    ports = {k: [free_port() for _ in range(3)] for k in ("client", "route", "http")}
    for i in (1, 2, 3):
        conf = nats_node_config(i, tmp_path, ports)
        done = subprocess.run([nats_server_binary(), "-t", "-c", str(conf)],
                              env={"NATS_RELAY_PASSWORD": PASSWORD},
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        assert done.returncode == 0, done.stderr
        shipped = (DEPLOY / "nats" / f"nats-{i}.conf").read_text()
        settings = "\n".join(line.split("#")[0] for line in shipped.splitlines())
        assert "jetstream" not in settings.lower()  # nothing is ever persisted
        assert len(re.findall(r"tls://nats-\d\.haven\.internal:6222", shipped)) == 2


def test_systemd_accepts_the_cluster_unit(tmp_path: Path) -> None:
    unit = (DEPLOY / "haven-cluster@.service").read_text()
    haven = Path(sys.executable).with_name("haven")
    (tmp_path / "haven-cluster@.service").write_text(
        unit.replace("/opt/haven/venv/bin/haven", str(haven))
    )
    instance = tmp_path / "haven-cluster@3.service"
    instance.symlink_to(tmp_path / "haven-cluster@.service")
    done = run(tool("systemd-analyze"), "verify", str(instance))
    assert "haven-cluster" not in done.stderr, done.stderr


def test_the_cluster_config_checks(tmp_path: Path) -> None:
    secrets = Secrets.make(tmp_path)
    key = tmp_path / "relay.key"
    subprocess.run([sys.executable, "-m", "haven", "keygen", "--out", str(key)], check=True,
                   capture_output=True)  # fmt: skip
    cluster_key, password = secrets.cluster_key, secrets.password
    conf = (DEPLOY / "cluster.toml").read_text().replace(
        "/etc/haven/nats-ca.pem", str(secrets.cert)
    )
    (tmp_path / "cluster.toml").write_text(conf)
    args = [sys.executable, "-m", "haven", "serve", "--check-config",
            "--config", str(tmp_path / "cluster.toml"), "--key", str(key),
            "--cluster-key", str(cluster_key), "--nats-password-file", str(password)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    password.chmod(0o644)
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 2
    assert "chmod 600" in done.stderr


@contextmanager
def three_node_bus(tmp: Path, procs: list[subprocess.Popen[bytes]] | None = None,
                   ) -> Iterator[list[int]]:  # fmt: skip
    """The shipped three-node bus on loopback; ``procs`` receives the node processes."""
    ports = {k: [free_port() for _ in range(3)] for k in ("client", "route", "http")}
    procs = [] if procs is None else procs
    with ExitStack() as stack:
        for i in (1, 2, 3):
            conf = nats_node_config(i, tmp, ports)
            proc = subprocess.Popen(
                [nats_server_binary(), "-c", str(conf)], env={"NATS_RELAY_PASSWORD": PASSWORD},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(proc)
            stack.callback(proc.wait, 10)
            stack.callback(proc.terminate)
        yield ports["client"]


async def test_relays_on_different_nodes_of_the_shipped_bus_share_a_room(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    secrets = Secrets.make(tmp_path)
    with three_node_bus(tmp_path) as ports:
        # Each relay on its own node; the routes join them.
        a = await secrets.relay(nursery, f"tls://127.0.0.1:{ports[0]}")
        b = await secrets.relay(nursery, f"tls://127.0.0.1:{ports[1]}")
        await until(lambda: a.relay.cluster.ready and b.relay.cluster.ready)
        await until(lambda: len(a.relay.cluster.peers_seen) == 1)  # heard across the routes
        await share_a_room(a, b, b"across two NATS nodes")
        # A wrong password: the relay starts, is never ready, and says why in its log.
        wrong = password_file(tmp_path / "wrong.password", "not it")
        c = await secrets.relay(nursery, f"tls://127.0.0.1:{ports[2]}", password=wrong)
        await trio.sleep(1.0)
        assert not c.relay.cluster.ready
        assert c.relay.cluster.client.reconnects == 0


async def test_a_relay_fails_over_to_another_node_when_its_node_dies(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    secrets = Secrets.make(tmp_path)
    nodes: list[subprocess.Popen[bytes]] = []
    with three_node_bus(tmp_path, nodes) as ports:
        urls = ",".join(f"tls://127.0.0.1:{p}" for p in ports)  # as deploy/cluster.toml
        a = await secrets.relay(nursery, urls)
        b = await secrets.relay(nursery, urls)
        await until(lambda: a.relay.cluster.ready and b.relay.cluster.ready)
        first = a.relay.cluster.client.server
        assert first is not None
        nodes[ports.index(first.port)].kill()  # a's node dies
        await until(lambda: a.relay.cluster.client.server not in (None, first)
                    and a.relay.cluster.ready)  # fmt: skip
        await until(lambda: b.relay.cluster.ready)
        await share_a_room(a, b, b"after a node died")
