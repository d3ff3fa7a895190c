"""One import namespace: the wheel installs ``haven`` and nothing else at top level.

The repository keeps its prescribed folders (``protocol/``, ``relay/``, ``client/``,
``loadtest/``); ``haven/`` links them. Code that imported a folder by its bare name would
load a second copy of that module (two ``ErrorCode`` classes, two hubs) whenever the
repository root is on ``sys.path``, so no source file may do it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("protocol", "relay", "client", "loadtest")
#: Folders whose Python files are checked for bare imports of the four packages.
SOURCE_ROOTS = ("haven", *FOLDERS, "bench", "tests", "docs", "scripts", "web/sdk/scripts")


def _python_files() -> list[Path]:
    files: list[Path] = []
    for root in SOURCE_ROOTS:
        base = REPO / root
        if root == "haven":
            files.extend(base.glob("*.py"))
        elif base.is_dir():
            files.extend(base.rglob("*.py"))
    return files


def test_no_source_imports_a_folder_by_its_bare_name() -> None:
    offenders: list[str] = []
    for path in _python_files():
        tree = ast.parse(path.read_text("utf-8"), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FOLDERS:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    assert offenders == []


def test_haven_links_every_folder() -> None:
    for folder in FOLDERS:
        link = REPO / "haven" / folder
        assert link.is_symlink(), link
        assert link.resolve() == (REPO / folder).resolve()


def _build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        cwd=out,
    )
    (wheel,) = out.glob("haven_relay-*.whl")
    return wheel


def test_wheel_holds_only_haven_and_works_alone(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        top = {name.split("/")[0] for name in names}
        (dist_info,) = (t for t in top if t.endswith(".dist-info"))
        assert top == {"haven", dist_info}
        assert zf.read(f"{dist_info}/top_level.txt").decode().split() == ["haven"]
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        assert "haven = haven.relay.cli:main" in entry_points
        zf.extractall(tmp_path / "site")
    # Every module of every folder is in the wheel under haven/, with the data files.
    for folder in FOLDERS:
        for source in (REPO / folder).rglob("*.py"):
            rel = source.relative_to(REPO).as_posix()
            assert f"haven/{rel}" in names, rel
        assert f"haven/{folder}/py.typed" in names
    assert "haven/protocol/data/pgp_words.txt" in names
    # The unpacked wheel works without the repository on the path (the data file loads).
    code = (
        "import sys, haven, haven.protocol.codes as c, haven.relay.cli, haven.loadtest.cli\n"
        "assert haven.__file__.startswith(sys.argv[1]), haven.__file__\n"
        "print(len(c.parse_room_code(c.new_room_code())) > 0)\n"
    )
    site = str(tmp_path / "site")
    result = subprocess.run(
        [sys.executable, "-c", code, site],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": site, "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.strip() == "True"


def test_python_dash_m_haven_is_the_haven_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "haven", "--help"], capture_output=True, text=True, check=True
    )
    for sub in ("serve", "keygen", "token", "loadtest"):
        assert sub in result.stdout


def test_importing_haven_protocol_does_not_load_the_sdk() -> None:
    code = "import sys, haven.protocol.codec\nassert 'haven.client' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
