"""The docs: the site builds with ``mkdocs build --strict`` (a broken link or anchor fails it),
its generated lists hold what they are generated from, the README stays a short tour, and
every command and code block the README and the getting-started page show runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GETTING_STARTED = ROOT / "docs" / "getting-started.md"
#: The README is a tour; the manual is the docs site.
README_LIMIT = 15 * 1024
#: Commands a page shows that a test cannot run as they are, and what checks them instead.
NOT_RUN_HERE = {"make test": "it is the command running this test (.ci/run calls it)"}
#: What Spark prints on a terminal when its JVM logs at its defaults.
SPARK_NOISE = ("NativeCodeLoader", "Setting default log level", "log4j", " WARN ")


def _build(source: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    args = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(source / "mkdocs.yml")]
    return subprocess.run(
        [*args, "-d", str(site)], cwd=source, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = _build(ROOT, out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_a_broken_anchor_fails_the_build(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "lotan").symlink_to(ROOT / "lotan")
    (copy / "tests").symlink_to(ROOT / "tests")
    (copy / "bench").symlink_to(ROOT / "bench")
    page = copy / "docs" / "training.md"
    page.write_text(page.read_text() + "\nSee [nowhere](planner.md#no-such-heading).\n")
    proc = _build(copy, tmp_path / "site")
    assert proc.returncode != 0 and "no-such-heading" in proc.stdout + proc.stderr


def _text(site: Path, page: str) -> str:
    return re.sub(r"<[^>]+>", "", (site / page / "index.html").read_text())


def test_the_generated_lists_hold_their_declarations(site: Path) -> None:
    from lotan.options import FIT_KEYWORDS
    from lotan.planner.lowering import LOWERINGS
    from lotan.planner.rules import RULES
    from tests.bad_input_cases import CASES

    models = _text(site, "models")
    assert all(f"{e.package}.{e.name}" in models for e in LOWERINGS)
    settings = _text(site, "training")
    assert all(kw in settings for kw, *_ in FIT_KEYWORDS)
    rules = _text(site, "planner")
    assert all(r.__name__ in rules for r in RULES)
    errors = _text(site, "errors")
    assert all(c.name in errors for c in CASES)
    for suite in ("quick", "full", "cluster", "measurements"):
        assert (site / "bench" / suite / "report" / "index.html").is_file(), suite


def test_the_readme_is_a_short_tour() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move the detail into docs/"


def _blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), re.M | re.S)


@pytest.mark.parametrize("page", [README, GETTING_STARTED], ids=lambda p: p.name)
def test_the_python_blocks_run(page: Path, tmp_path: Path) -> None:
    code = "\n".join(_blocks(page, "python"))
    assert code, f"{page.name} shows no Python"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _commands(page: Path) -> list[str]:
    lines = [ln.split("#")[0].strip() for b in _blocks(page, "bash") for ln in b.splitlines()]
    return [ln for ln in lines if ln]


def test_the_commands_not_run_here_are_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), "CI must run exactly the README's test command"
    dry = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True)
    for tool in ("ruff check", "ruff format --check", "mypy", "pytest"):
        assert tool in dry.stdout, tool


def _all_commands() -> list[str]:
    """Every command the two pages show, once each, in order."""
    return list(dict.fromkeys(_commands(README) + _commands(GETTING_STARTED)))


def test_both_pages_show_commands() -> None:
    assert _commands(README) and _commands(GETTING_STARTED)


@pytest.mark.parametrize("command", _all_commands())
def test_the_commands_run(command: str) -> None:
    """Each command, in the repository, with the environment's tools on PATH; the
    quickstart trains its 200 epochs on Spark with Spark's log off the terminal."""
    if command in NOT_RUN_HERE:
        pytest.skip(f"{command!r}: {NOT_RUN_HERE[command]} (checked by the test above)")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-2000:])
    if command == "make quickstart":
        assert "final test accuracy:" in proc.stdout
        noise = [w for w in SPARK_NOISE if w in proc.stdout + proc.stderr]
        assert not noise, (noise, proc.stderr[-2000:])
