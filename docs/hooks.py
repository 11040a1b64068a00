"""mkdocs hooks of the documentation site (``hooks:`` in mkdocs.yml).

The pages whose source lives elsewhere in the repository are added here, at build time, so
that there is one copy of each and nothing to keep in step by hand:

- ``notebooks/*.ipynb``: the lessons, rendered by mkdocs-jupyter (stored without outputs in
  ``notebooks/``; executed at build time unless ``TOEPLITZ_DOCS_EXECUTE=false``), each appended
  to the nav after ``notebooks/index.md``, in file-name order;
- ``changelog.md`` and ``benchmarks.md``: ``CHANGELOG.md`` and ``benchmarks/RESULTS.md``;
- ``cli.md``: the command-line reference, written from ``toeplitz_conv.cli.build_parser()``
  (the parser's help and each subcommand's), so it is always the help the command prints.
"""

from __future__ import annotations

import argparse
import inspect
import os
from contextlib import contextmanager
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_INDEX = "notebooks/index.md"
#: site page -> the repository file it shows
REPOSITORY_PAGES = {
    "changelog.md": ROOT / "CHANGELOG.md",
    "benchmarks.md": ROOT / "benchmarks" / "RESULTS.md",
}
CLI_PAGE = "cli.md"
HELP_COLUMNS = 80  # argparse wraps help to the terminal; the page gets a fixed width that fits it


def notebook_pages() -> list[str]:
    """``notebooks/NAME.ipynb`` for every lesson, in file-name (lesson) order."""
    return [f"notebooks/{p.name}" for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]


def _add_notebooks_to_nav(nav) -> bool:
    """Append the notebook pages after ``notebooks/index.md`` wherever the nav lists it."""
    if isinstance(nav, dict):
        return any(_add_notebooks_to_nav(v) for v in nav.values())
    if isinstance(nav, list):
        if NOTEBOOK_INDEX in nav:
            at = nav.index(NOTEBOOK_INDEX) + 1
            nav[at:at] = [p for p in notebook_pages() if p not in nav]
            return True
        return any(_add_notebooks_to_nav(item) for item in nav)
    return False


def on_config(config):
    if config.nav is not None and not _add_notebooks_to_nav(config.nav):
        raise PluginError(f"docs/hooks.py: mkdocs.yml's nav must list {NOTEBOOK_INDEX!r} (the notebooks follow it)")
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which must see the notebooks
def on_files(files, config):
    for page in notebook_pages():
        # a File read from the repository root, not File.generated: mkdocs-jupyter's wrapper
        # finds a notebook's path through src_dir, which a generated file does not have
        files.append(File(page, src_dir=str(ROOT), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    for page, source in REPOSITORY_PAGES.items():
        files.append(File.generated(config, page, abs_src_path=str(source)))
    files.append(File.generated(config, CLI_PAGE, content=cli_markdown()))
    return files


# --------------------------------------------------------------------------- the CLI page


@contextmanager
def _columns(n: int):
    """argparse formats help for ``$COLUMNS``: fix it while the help is written."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(n)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _help(parser: argparse.ArgumentParser) -> str:
    if hasattr(parser, "color"):  # Python 3.14 colours help for terminals: not for a page
        parser.color = False
    return parser.format_help().rstrip()


def cli_markdown() -> str:
    """The command-line reference page, from the parser the command itself builds."""
    from toeplitz_conv import cli

    with _columns(HELP_COLUMNS):
        parser = cli.build_parser()
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        summary = {a.dest: a.help for a in sub._choices_actions}
        lines = [
            "# Command line",
            "",
            ("<!-- written by docs/hooks.py from toeplitz_conv.cli.build_parser() at build time: "
             "change the parser, not this page -->"),
            "",
            (f"`{parser.prog}` is installed with the package; `python -m toeplitz_conv` is the same "
             f"command. The sections below are its `--help` and each command's `--help`."),
            "",
            "| command | what it does |",
            "|---|---|",
            *(f"| [`{name}`](#{parser.prog}-{name}) | {summary.get(name, '')} |" for name in sub.choices),
            "",
            f"**Exit status** (`toeplitz_conv.cli.main`): *{' '.join(inspect.getdoc(cli.main).split())}*",
            "",
            f"## {parser.prog}",
            "",
            "```text",
            _help(parser),
            "```",
        ]
        for name, subparser in sub.choices.items():
            lines += ["", f"## {parser.prog} {name}", "", "```text", _help(subparser), "```"]
    return "\n".join(lines) + "\n"
