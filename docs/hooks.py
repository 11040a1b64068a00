"""mkdocs hooks of the documentation site (``hooks:`` in mkdocs.yml).

The pages whose source lives elsewhere in the repository are added here, at build time, so
that there is one copy of each and nothing to keep in step by hand:

- ``notebooks/*.ipynb``: the lessons, rendered by mkdocs-jupyter (stored without outputs in
  ``notebooks/``; executed at build time unless ``TOEPLITZ_DOCS_EXECUTE=false``), each appended
  to the nav after ``notebooks/index.md``, in file-name order;
- ``changelog.md`` and ``benchmarks.md``: ``CHANGELOG.md`` and ``benchmarks/RESULTS.md``;
- ``cli.md``: the command-line reference, written from ``toeplitz_conv.cli.build_parser()``
  (the parser's help and each subcommand's), so it is always the help the command prints.

And every page is made to work offline (a classroom with no network, ``build/site`` opened
from disk): its formulas are turned into MathML when the site is built (latex2mathml; every
current browser draws MathML, no script needed), and the scripts that nbconvert's template puts
on the notebook pages to fetch MathJax and mermaid from a CDN are removed:

- the notebooks' ``$...$`` and ``$$...$$`` (their Markdown cells and sympy's LaTeX outputs),
  outside code;
- the Markdown pages' ``$...$`` and ``$$...$$``, which ``pymdownx.arithmatex`` (generic mode)
  marks as ``\\(...\\)`` and ``\\[...\\]``.

A formula latex2mathml cannot read, or one with a command it does not know, is a warning:
``mkdocs build --strict`` fails on it, naming the page and the LaTeX.
"""

from __future__ import annotations

import argparse
import html
import inspect
import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.toeplitz_conv")

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


# --------------------------------------------------------------------------- offline pages

#: Elements whose text is never maths: code, scripts, styles, maths already converted; and
#: mkdocs-jupyter's hidden copy of each cell's source for its copy button (code as text).
NO_MATH_INSIDE = frozenset({"pre", "code", "kbd", "samp", "script", "style", "textarea", "math", "svg"})
_NO_MATH_CLASS = re.compile(r"""\bclass=["'][^"']*\bclipboard-copy-txt\b""")
#: A tag or a comment; the text between two is one run of text.
_TAG = re.compile(r"(<!--.*?-->|<[^>]*>)", re.DOTALL)
_TAG_NAME = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)")
#: Display maths first, then inline; ``\$`` is a dollar sign (MathJax's processEscapes).
_NOTEBOOK_MATH = re.compile(r"\$\$(?P<display>.+?)\$\$|(?<!\\)\$(?P<inline>(?:\\.|[^$\\])+?)\$", re.DOTALL)
_MARKDOWN_MATH = re.compile(r"\\\[(?P<display>.+?)\\\]|\\\((?P<inline>.+?)\\\)", re.DOTALL)
#: What nbconvert's template adds to a notebook page to load MathJax from a CDN.
_MATHJAX_BLOCK = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.DOTALL)
#: nbconvert's loader of mermaid from a CDN: inert on a page with no mermaid diagram.
_MERMAID_LOADER = re.compile(r"<script type=\"module\">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*?</script>",
                             re.DOTALL)


def latex_to_mathml(latex: str, display: bool, where: str) -> str | None:
    """``<math>`` for one formula (its LaTeX kept as ``alttext``), or None with a warning."""
    from latex2mathml.converter import convert

    try:
        mathml = convert(latex, display="block" if display else "inline")
    except Exception as error:  # latex2mathml raises many kinds: any is the formula's fault
        log.warning(f"docs/hooks.py: {where}: latex2mathml cannot read ${latex}$: {error}")
        return None
    unknown = re.findall(r"\\[a-zA-Z]+", _TAG.sub("", mathml))
    if unknown:
        log.warning(f"docs/hooks.py: {where}: latex2mathml does not know {', '.join(unknown)} in ${latex}$")
        return None
    alt = html.escape(" ".join(latex.split()), quote=True)
    return mathml.replace("<math ", f'<math alttext="{alt}" ', 1)


def render_maths(page_html: str, pattern: re.Pattern, where: str) -> str:
    """Every formula ``pattern`` finds in the text of ``page_html`` (not inside code) as MathML."""

    def one(match: re.Match) -> str:
        display = match.group("display") is not None
        latex = html.unescape(match.group("display") if display else match.group("inline")).strip()
        return latex_to_mathml(latex, display, where) or match.group(0)

    parts = _TAG.split(page_html)
    skipping, depth = None, 0  # the element whose text is not maths, and how deep in it we are
    for i, part in enumerate(parts):
        if i % 2:  # a tag
            tag = _TAG_NAME.match(part)
            if not tag or part.endswith("/>"):
                continue
            closing, name = tag.group(1) == "/", tag.group(2).lower()
            if skipping is None:
                if not closing and (name in NO_MATH_INSIDE or _NO_MATH_CLASS.search(part)):
                    skipping, depth = name, 1
            elif name == skipping:
                depth += -1 if closing else 1
                skipping = skipping if depth else None
        elif skipping is None and part.strip():
            parts[i] = pattern.sub(one, part)
    return "".join(parts)


def _render_toc_maths(items, pattern: re.Pattern, where: str) -> None:
    """The table of contents shows the headings' formulas as MathML too."""
    for item in items:
        item.title = render_maths(item.title, pattern, f"{where}, table of contents")
        _render_toc_maths(item.children, pattern, where)


@event_priority(-50)  # after mkdocs-jupyter has put the notebook's HTML in the page
def on_page_content(html_content, page, config, files):
    where = page.file.src_uri
    if where.endswith(".ipynb"):
        html_content = _MATHJAX_BLOCK.sub("", html_content)
        if 'class="jp-Mermaid"' not in html_content:
            html_content = _MERMAID_LOADER.sub("", html_content)
        pattern = _NOTEBOOK_MATH
    elif "arithmatex" in html_content:
        pattern = _MARKDOWN_MATH
    else:
        return html_content
    _render_toc_maths(page.toc.items, pattern, where)
    return render_maths(html_content, pattern, where)
