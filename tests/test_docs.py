"""The documentation builds without warnings, and every code block in it runs.

Blocks are read from the fenced code of ``docs/*.md``:

- ```` ```python ```` blocks of one page run in order, in one namespace, in this process;
- ```` ```bash ```` blocks run with ``bash -euo pipefail``; every command in them must be
  ``galsim-hub ...``, ``python -m galsim_hub...`` or ``galsim ...`` (optionally after
  ``VAR=value`` assignments; ``mkdir -p`` is allowed too), so that an executed block cannot
  hide other programs;
- ```` ```yaml ````, ```` ```json ```` and ```` ```text ```` blocks are shown, not run; YAML
  and JSON must parse;
- ```` ```{.bash .norun} ```` (or ``{.python .norun}``) marks a block that cannot run here
  (``pip install``, downloads, hour-long trainings). Only the pages and counts listed in
  ``NORUN_ALLOWED`` may use it, so a new skipped block needs a visible change to this file.

Python and bash blocks of a page share a fresh working directory holding a copy of the
repository's ``examples/`` folder, with ``GALSIM_HUB_CACHE`` pointing at a fresh folder and
``GALSIM_HUB_OFFLINE=1``; other environment variables (``GALSIM_HUB_INDEX`` included) pass
through.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(path.name for path in DOCS.glob("*.md"))

EXECUTED_LANGUAGES = ("python", "bash")
SHOWN_LANGUAGES = ("yaml", "json", "text")
ALLOWED_COMMANDS = re.compile(r"^(galsim-hub(\s|$)|python -m galsim_hub(\.\w+)*(\s|$)|galsim\s|mkdir -p\s)")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*\s+")
#: Pages that may hold blocks marked ``.norun``, and how many.
NORUN_ALLOWED = {
    "install.md": 3,  # pip install, from PyPI and from a checkout
    "handles.md": 2,  # the 52 MB download of hub:Lanusse2020 and its offline install
    "model_format.md": 1,  # publishing to an HTTP hub needs a server and a token
    "training.md": 6,  # COSMOS download, full-size trainings (hours), the real-galaxy and multi-band models (an hour each), multi-GPU and multi-machine runs
    "validation.md": 2,  # the full-size validation of the default model; the AEGIS check (reads ../shared)
    "real_galaxies.md": 1,  # validations on the real galaxies of ../shared/data
    "migration.md": 1,  # upstream TF1 galsim_hub code
    "backends.md": 1,  # pip install of the extras
    "btk.md": 1,  # pip install of the extra
}
#: Pages whose Python runs in a process of its own (Keras runs one backend per process, and this
#: one already runs TensorFlow's).
FRESH_PROCESS_PAGES = {"backends.md"}
BLOCK_TIMEOUT_S = 300

_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_NORUN_INFO = re.compile(r"^\{\s*\.(?P<language>\w+)\s+\.norun\s*\}$")


@dataclass
class Block:
    """One fenced code block of a page."""

    page: str
    line: int
    language: str
    norun: bool
    body: str

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def read_blocks(page: str) -> list[Block]:
    """The fenced code blocks of ``docs/<page>`` in document order."""
    text = (DOCS / page).read_text(encoding="utf-8")
    indented = re.search(r"^[ \t]+```", text, re.MULTILINE)
    if indented:
        line = text.count("\n", 0, indented.start()) + 1
        raise AssertionError(f"docs/{page}:{line}: indented fence; MkDocs renders only fences at the line start")
    blocks = []
    for match in _FENCE.finditer(text):
        info = match.group("info").strip()
        line = text.count("\n", 0, match.start()) + 1
        norun = _NORUN_INFO.match(info)
        if norun:
            language, skipped = norun.group("language"), True
        else:
            language, skipped = info, False
        if language not in EXECUTED_LANGUAGES + SHOWN_LANGUAGES:
            raise AssertionError(
                f"docs/{page}:{line}: fence info {info!r}; use one of "
                f"{', '.join(EXECUTED_LANGUAGES + SHOWN_LANGUAGES)} or {{.LANG .norun}}"
            )
        blocks.append(Block(page, line, language, skipped, match.group("body")))
    return blocks


def shell_commands(body: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments and blanks dropped."""
    joined = re.sub(r"\\\n\s*", " ", body)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_docs_exist():
    expected = {
        "index.md",
        "install.md",
        "quickstart.md",
        "handles.md",
        "model_format.md",
        "config.md",
        "cli.md",
        "training.md",
        "validation.md",
        "migration.md",
    }
    assert expected <= set(PAGES), f"missing pages: {sorted(expected - set(PAGES))}"


def test_mkdocs_build_strict(tmp_path):
    result = subprocess.run(
        # Not --quiet: it hides the warnings from --strict, which then passes anything.
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "WARNING" not in output, f"mkdocs build --strict failed:\n{output}"
    for page in PAGES:
        name = page[:-3]
        built = tmp_path / "site" / ("index.html" if name == "index" else f"{name}/index.html")
        assert built.is_file(), f"{page} was not built"


def test_fences_are_known_and_norun_is_rare():
    counts = {}
    for page in PAGES:
        blocks = read_blocks(page)  # raises on an unknown fence info string
        counts[page] = sum(block.norun for block in blocks)
        executed = [block for block in blocks if block.language in EXECUTED_LANGUAGES and not block.norun]
        assert page == "index.md" or executed, f"docs/{page} has no executed code block"
    over = {page: n for page, n in counts.items() if n > NORUN_ALLOWED.get(page, 0)}
    assert not over, f"pages with more .norun blocks than NORUN_ALLOWED permits: {over}"


def test_shown_blocks_parse():
    for page in PAGES:
        for block in read_blocks(page):
            if block.language == "yaml":
                yaml.safe_load(block.body)
            elif block.language == "json":
                json.loads(block.body)


def test_bash_blocks_run_only_known_programs():
    for page in PAGES:
        for block in read_blocks(page):
            if block.language != "bash" or block.norun:
                continue
            for command in shell_commands(block.body):
                while ASSIGNMENT.match(command):
                    command = ASSIGNMENT.sub("", command, count=1)
                assert ALLOWED_COMMANDS.match(command), (
                    f"{block.where}: {command!r} is not a galsim-hub, python -m galsim_hub or galsim "
                    f"command; mark the block {{.bash .norun}} (and list the page in NORUN_ALLOWED)"
                )


def test_config_page_shows_the_example_yaml():
    example = (ROOT / "examples" / "field.yaml").read_text(encoding="utf-8")
    shown = [block.body for block in read_blocks("config.md") if block.language == "yaml"]
    assert example in shown, "docs/config.md must show examples/field.yaml verbatim in a ```yaml block"


def test_training_page_lists_every_config_key():
    from galsim_hub.training.fitting import config as training_config

    sections = {
        "dataset": training_config.DatasetConfig,
        "vae": training_config.VAEConfig,
        "flow": training_config.FlowConfig,
        "export": training_config.ExportConfig,
    }
    expected = {f"{name}.{field.name}" for name, cls in sections.items() for field in dataclasses.fields(cls)}
    text = (DOCS / "training.md").read_text(encoding="utf-8")
    first_cells = re.findall(r"^\|([^|\n]*)\|", text, re.MULTILINE)
    documented = {key for cell in first_cells for key in re.findall(r"`((?:dataset|vae|flow|export)\.\w+)`", cell)}
    assert documented == expected, (
        f"training.md config table: missing {sorted(expected - documented)}, "
        f"not in the config {sorted(documented - expected)}"
    )


def _run_bash(block: Block, cwd: Path) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.body],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )
    assert result.returncode == 0, (
        f"{block.where}: bash block failed (status {result.returncode})\n{block.body}\n"
        f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )


def _run_python_in_a_new_process(blocks: list[Block], cwd: Path) -> None:
    """Run a page's Python blocks, in order, as one script in a new interpreter."""
    script = cwd / "page_code.py"
    script.write_text("\n\n".join(block.body for block in blocks))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=cwd, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S
    )
    where = ", ".join(block.where for block in blocks)
    assert result.returncode == 0, f"{where}: Python blocks failed\n--- stderr\n{result.stderr[-4000:]}"


def _run_python(block: Block, namespace: dict) -> None:
    code = compile(block.body, block.where, "exec")
    exec(code, namespace)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_page_code_runs(page, tmp_path, monkeypatch):
    blocks = [block for block in read_blocks(page) if block.language in EXECUTED_LANGUAGES and not block.norun]
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(ROOT / "examples", work / "examples")
    monkeypatch.chdir(work)
    monkeypatch.setenv("GALSIM_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", "1")
    # Restored after the test, whatever the page's code sets.
    if "GALSIM_HUB_INDEX" in os.environ:
        monkeypatch.setenv("GALSIM_HUB_INDEX", os.environ["GALSIM_HUB_INDEX"])
    else:
        monkeypatch.delenv("GALSIM_HUB_INDEX", raising=False)
    if page in FRESH_PROCESS_PAGES:
        _run_python_in_a_new_process([block for block in blocks if block.language == "python"], work)
        blocks = [block for block in blocks if block.language != "python"]
    namespace = {"__name__": f"docs_{page[:-3]}"}
    for block in blocks:
        if block.language == "python":
            _run_python(block, namespace)
        else:
            _run_bash(block, work)
