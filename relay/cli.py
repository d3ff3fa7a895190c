"""The ``haven`` command: ``serve``, ``keygen`` (and the flows' and load tester's).

``haven serve`` prints exactly one line first, ``haven relay ws://HOST:PORT key=KEY``,
so scripts and front ends can pin the relay key; everything else goes to the log.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from . import __version__, demo, logs, ramonly
from .config import Config, ConfigError, load, scalar_fields, validate
from .keys import KeyFileError, write_cluster_key, write_private_key
from .server import RelayInfo, b64url, serve
from .settings_help import SETTINGS_HELP

#: Extra subcommands registered by other packages: name -> (add_arguments, run).
SUBCOMMANDS: dict[
    str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {}


def _describe(name: str, default: object) -> str:
    """``--help`` text of one setting: meaning, unit, default, environment variable."""
    unit, meaning = SETTINGS_HELP[name]
    shown = "none" if default is None else str(default).lower() if isinstance(
        default, bool) else str(default)  # fmt: skip
    text = f"{meaning} [{unit}; default {shown}; env HAVEN_{name.upper()}]"
    return text.replace("%", "%%")  # argparse formats help with %


def _serve_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file ([relay] table and "
                        "the flows' [[queues]], [[rooms]], [[issuers]]); see docs/operations.md")
    parser.add_argument("--check-config", action="store_true", help="read and check the "
                        "configuration, key and flows (like nginx -t), then exit 0 or 2")
    parser.add_argument("--print-config", action="store_true", help="print the effective "
                        "settings (flags > environment > file > defaults) as TOML and exit")
    parser.add_argument("--demo", action="store_true", help="demo mode: an in-memory token "
                        "issuer, a helpline queue, scheduled rooms, the pages on 127.0.0.1:"
                        f"{demo.DEMO_PAGES_PORT}; prints the pages URL and demo tokens")
    defaults = Config()
    for f in scalar_fields():
        flag = "--" + f.name.replace("_", "-")
        if f.name == "key_file":
            flag = "--key"
        text = _describe(f.name, getattr(defaults, f.name))
        if f.type == "bool":
            parser.add_argument(
                flag, dest=f.name, action="store_const", const=True, default=None, help=text
            )
            continue
        parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=text)


def _is_loopback(host: str) -> bool:
    """Whether ``host`` (as configured) names only the loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: could resolve anywhere


async def _run_relay(args: argparse.Namespace) -> None:
    flags = {f.name: getattr(args, f.name) for f in scalar_fields()}
    shown = None
    if args.demo:
        # Demo flows replace the config file's tables; explicit flags still win.
        if flags["pages_port"] is None:
            flags["pages_port"] = demo.DEMO_PAGES_PORT
        if flags["pages_dir"] is None:
            flags["pages_dir"] = demo.DEFAULT_PAGES_DIR
            if not demo.DEFAULT_PAGES_DIR.is_dir():
                # A checkout without built pages still gets a working demo relay.
                flags["pages_port"] = "none"
                print(f"haven: pages not built ({demo.DEFAULT_PAGES_DIR} missing; "
                      "./scripts/serve builds them): pages listener off", file=sys.stderr)
        if flags["token_audience"] is None:
            flags["token_audience"] = demo.AUDIENCE
        shown = demo.build(time.time())
    config = load(flags, config_file=args.config)
    if shown is not None:
        config = config.replace(extra=shown.extra)
        validate(config)
    logs.setup(config.log_level, config.log_format)
    if config.metrics_port is not None and not _is_loopback(config.metrics_host):
        logging.getLogger("haven.relay").warning(
            "the metrics listener binds %s, beyond loopback: anyone who can reach it reads "
            "the relay's metrics; bind 127.0.0.1 and scrape through a tunnel or proxy",
            config.metrics_host,
        )
    if config.extra.get("issuers") and config.token_audience is None:
        logging.getLogger("haven.relay").warning(
            "token issuers are configured but token_audience is not: role tokens are not "
            "bound to this deployment (issue them with --audience and set token_audience)"
        )
    async with trio.open_nursery() as nursery:
        info: RelayInfo = await nursery.start(serve, config)
        # Start-up is over (config and key read, listeners open): from now on nothing
        # is written to disk, no core dumps, memory locked if asked.
        ramonly.enforce(config)
        # Catch signals before announcing: a supervisor may signal as soon as it reads.
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            print(info.banner(), flush=True)
            if info.metrics_url:
                line = f"metrics {info.metrics_url}/metrics"
                if config.log_format == "json":
                    line = json.dumps({"metrics": f"{info.metrics_url}/metrics"})
                print(line, file=sys.stderr, flush=True)
            if shown is not None:
                print("\n".join(demo.lines(shown, info.pages_url)), flush=True)
            elif info.pages_url:
                print(f"pages {info.pages_url}/", flush=True)
            async for _ in signals:
                info.relay.drain_requested.set()
                break


#: Start-up failures reported as one line (exit 2) rather than a traceback.
_STARTUP_ERRORS = (ConfigError, KeyFileError, ramonly.RamOnlyError, OSError)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_or_print(args: argparse.Namespace) -> int:
    """``--check-config`` / ``--print-config``: read everything a start would, run nothing."""
    from . import flows
    from .hub import Hub
    from .server import load_or_generate_key

    try:
        config = load(
            {f.name: getattr(args, f.name) for f in scalar_fields()}, config_file=args.config
        )
        Hub(config, 0.0, extend=flows.extension(config))  # parses queues, rooms, issuers
        load_or_generate_key(config)
        if config.cluster is not None:
            from haven.cluster.link import nats_options

            from .keys import read_cluster_key

            assert config.cluster_key is not None
            read_cluster_key(config.cluster_key)
            nats_options(config)  # the password file and CA bundle can be read
    except (ConfigError, KeyFileError, OSError, ValueError) as exc:
        print(f"haven: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print("[relay]")
        for f in scalar_fields():
            value = getattr(config, f.name)
            if value is None:
                print(f"# {f.name} = (none)")
            else:
                print(f"{f.name} = {_toml_value(value)}")
    else:
        print("haven: configuration OK", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    if args.check_config or args.print_config:
        return _check_or_print(args)
    try:
        trio.run(_run_relay, args)
    except _STARTUP_ERRORS as exc:
        print(f"haven: {exc}", file=sys.stderr)
        return 2
    except BaseExceptionGroup as group:
        # Raised inside the nursery (a port in use, mlock refused): Trio wraps it.
        known, rest = group.split(_STARTUP_ERRORS)
        if known is None or rest is not None:
            raise
        leaf: BaseException = known
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        print(f"haven: {leaf}", file=sys.stderr)
        return 2
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from haven.protocol.noise import public_bytes

    if args.cluster:
        from haven.cluster.seal import ClusterKey

        try:
            write_cluster_key(args.out, ClusterKey.generate())
        except KeyFileError as exc:
            print(f"haven: {exc}", file=sys.stderr)
            return 2
        print(f"haven: wrote a cluster key to {args.out}; copy it (mode 0600) to every relay "
              "of the cluster and to nothing else")  # fmt: skip
        return 0
    key = X25519PrivateKey.generate()
    try:
        write_private_key(args.out, key)
    except KeyFileError as exc:
        print(f"haven: {exc}", file=sys.stderr)
        return 2
    print(b64url(public_bytes(key.public_key())))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="haven", description="Haven anonymous session relay")
    parser.add_argument("--version", action="version", version=f"haven {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="run a relay")
    _serve_parser(serve_p)
    serve_p.set_defaults(func=cmd_serve)
    keygen_p = sub.add_parser("keygen", help="write a relay static key (mode 0600)")
    keygen_p.add_argument("--out", type=Path, required=True,
                          help="file to create (refused if it exists)")
    keygen_p.add_argument("--cluster", action="store_true",
                          help="write a cluster key instead: the secret every relay of one "
                               "cluster shares to seal its NATS traffic")
    keygen_p.set_defaults(func=cmd_keygen)
    _load_plugins()
    for name, (add_args, run) in SUBCOMMANDS.items():
        # Every option of the other subcommands shows its default in --help.
        p = sub.add_parser(name, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        add_args(p)
        p.set_defaults(func=run)
    return parser


def _load_plugins() -> None:
    """Import modules that register more subcommands, if they are installed."""
    for module in ("haven.relay.tokens_cli", "haven.loadtest.cli"):
        try:
            __import__(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    # Run the imported module's ``main`` so plugins (``haven token``, ``haven loadtest``)
    # register into the same ``SUBCOMMANDS`` that parses the command line.
    from haven.relay.cli import main as _main

    raise SystemExit(_main())
