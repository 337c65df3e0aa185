"""Packaging: what the sdist holds (and that its tests run from it), the metadata an index
shows, and what the README promises.  Decisions: docs/packaging.md."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Never part of a source release (.gitignore's list, plus the repository and the venv).
IGNORED = (".git", ".venv", "*.egg-info", "__pycache__", "*.py[cod]", ".hypothesis", ".*_cache", "instance",
           "build", "dist", "artifacts", ".import_linter_cache")
#: Hosts reserved for documentation (RFC 2606 / RFC 6761): a placeholder can point nowhere real.
PLACEHOLDER_HOST = re.compile(r"(^|\.)(example\.(com|net|org)|[a-z0-9-]+\.(example|invalid|test))$")
SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")


def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    return parser


def runtime_requirements() -> list[str]:
    lines = setup_cfg()["options"]["install_requires"].split("\n")
    return [re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0] for line in lines if line.strip()]


def build(tmp: Path, *what: str, source: Path = ROOT) -> Path:
    """``python -m build`` without isolation (the test extra brings build and setuptools)."""
    pytest.importorskip("build", reason="the test extra installs build")
    tree = tmp / "src"
    shutil.copytree(source, tree, ignore=shutil.ignore_patterns(*IGNORED))
    out = tmp / "dist"
    result = subprocess.run([sys.executable, "-m", "build", *what, "--no-isolation", "--outdir", str(out)],
                            cwd=tree, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    (archive,) = build(tmp_path_factory.mktemp("sdist"), "--sdist").glob("*.tar.gz")
    return archive


@pytest.fixture(scope="module")
def sdist_names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        return {name[len(top) + 1:] for name in archive.getnames() if name != top}


@pytest.fixture(scope="module")
def pkg_info(sdist: Path) -> Any:
    with tarfile.open(sdist) as archive:
        member = next(m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"))
        handle = archive.extractfile(member)
        assert handle is not None
        return Parser().parsestr(handle.read().decode("utf-8"))


def test_the_sdist_holds_the_tests_and_everything_they_use(sdist_names: set[str]) -> None:
    expected = {
        "README.md", "LICENSE", "MANIFEST.in", "pyproject.toml", "setup.cfg", "PKG-INFO", ".ci/run",
        "pingtree_leads/py.typed", "tests/__init__.py", "tests/conftest.py",
        "examples/app.py", "examples/quickstart.sh", "examples/README.md", "docs/index.md",
    }
    for folder, pattern in (("pingtree_leads", "*.py"), ("tests", "*.py"), ("benchmarks", "*"), ("docs", "*.md")):
        expected |= {f"{folder}/{p.name}" for p in (ROOT / folder).glob(pattern) if p.is_file()}
    assert expected <= sdist_names, sorted(expected - sdist_names)
    junk = [n for n in sdist_names
            if re.search(r"(^|/)(__pycache__|\.hypothesis|instance|artifacts|\.venv|\.git)(/|$)|\.py[cod]$", n)]
    assert not junk


def test_metadata_license_pythons_and_project_urls(pkg_info: Any) -> None:
    assert tuple(int(p) for p in pkg_info["Metadata-Version"].split(".")) >= (2, 4)
    assert pkg_info["License-Expression"] == "MIT"
    assert pkg_info.get_all("License-File") == ["LICENSE"]
    classifiers = pkg_info.get_all("Classifier")
    assert not [c for c in classifiers if c.startswith("License ::")]  # the expression replaces them
    versions = tuple(c.rsplit(" :: ", 1)[1] for c in classifiers
                     if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    assert versions == SUPPORTED_PYTHONS
    assert pkg_info["Requires-Python"] == f">={SUPPORTED_PYTHONS[0]}"
    urls = dict(entry.split(", ", 1) for entry in pkg_info.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Source"} <= set(urls)
    for url in urls.values():
        parts = urlsplit(url)
        assert parts.scheme == "https" and PLACEHOLDER_HOST.search(parts.hostname or ""), url
    assert urls["Documentation"].endswith("/docs/index.md")
    plain = [r for r in pkg_info.get_all("Requires-Dist") if "extra ==" not in r]
    assert [re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in plain] == runtime_requirements()
    assert {"yaml", "docs", "examples", "test"} <= set(pkg_info.get_all("Provides-Extra"))


def readme_links() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_readme_links_resolve_in_the_repository_and_the_sdist(sdist_names: set[str]) -> None:
    links = readme_links()
    assert "docs/index.md" in links
    relative = [link.split("#", 1)[0] for link in links if not urlsplit(link).scheme]
    assert relative, links
    for target in relative:
        assert (ROOT / target).exists(), target
        assert target in sdist_names, target


def test_readme_states_dependencies_test_commands_and_a_two_command_quick_start() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    install = next(p for p in text.split("\n\n") if "runtime dependencies" in p)
    for name in runtime_requirements():
        assert name in install, name
    quick = text.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in quick.splitlines() if line.split("#", 1)[0].strip()]
    assert commands == ["bash examples/quickstart.sh", "bash .ci/run"]
    assert ".venv/bin/python -m pytest" in text and "slow" in text
    assert re.search(r"`bash \.ci/run` takes about \d+½? minutes", text)


@pytest.mark.slow
def test_the_sdist_runs_its_own_tests_and_builds_a_lean_wheel(sdist: Path, tmp_path: Path) -> None:
    with tarfile.open(sdist) as archive:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # 3.10.12+
        archive.extractall(tmp_path / "unpacked", **safe)  # type: ignore[arg-type]
    (tree,) = (tmp_path / "unpacked").iterdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "PYTHONPATH")}
    env["PYTHONPATH"] = str(tree)  # the sdist's package, not the checkout's
    where = subprocess.run([sys.executable, "-c", "import pingtree_leads; print(pingtree_leads.__file__)"],
                           cwd=tree, env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(tree)
    # The sdist's own tests (conftest, fixtures, the example app) from the sdist alone.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
         "tests/test_openapi.py", "tests/test_example_app.py"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    # The wheel built from the sdist holds the library only (tests and examples stay in the sdist).
    (wheel,) = build(tmp_path / "wheel", "--wheel", source=tree).glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert {n.split("/")[0] for n in names} == {"pingtree_leads", f"{wheel.name.split('-')[0]}-"
                                                f"{wheel.name.split('-')[1]}.dist-info"}
    assert "pingtree_leads/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
