"""A griffe extension (mkdocs.yml, mkdocstrings' ``extensions``): the reST bits of the
docstrings read as Markdown.

The docstrings are numpydoc, written for reading in a terminal and in Sphinx alike. Two reST
habits would show as clutter on the site:

- roles: ``:func:`~toeplitz_conv.conv_matrix``` becomes a link to that object's entry
  where the site documents it (an *optional* autoref: plain code where it does not, never a
  broken link), shown as ``conv_matrix`` (``~`` keeps the last name, as in Sphinx);
- literal blocks: a paragraph ending in ``::`` introduces an indented block, which Markdown
  already shows as code; the ``::`` becomes ``:`` (a lone ``::`` line goes), as Sphinx
  prints it;
- the items of numpydoc's sections (``name : type`` under Parameters, Returns, ...): a
  type is shown verbatim in a code cell, so its double backticks go and a role keeps only
  its name (``dtype of ``x``, from :func:`conv_matrix``` reads ``dtype of x, from
  conv_matrix``); an item naming several parameters becomes one item per name, so that
  each gets its own annotation and default from the signature.

Docstrings are never changed in the package: only what griffe hands to mkdocstrings.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|const):`(?P<target>[^`]+)`")
_LITERAL = re.compile(r"(?m)(?<=\S)::$")
_LONE_LITERAL = re.compile(r"(?m)^[ \t]*::[ \t]*\n")
_UNDERLINE = re.compile(r"^-{3,}$")
#: numpydoc sections whose unindented lines are ``name : type`` (or a bare type) items
_ITEM_SECTIONS = {"Parameters", "Other Parameters", "Returns", "Yields", "Receives", "Raises",
                  "Warns", "Attributes"}
#: the sections whose items are named (``name : type``), not bare types
_NAMED_SECTIONS = {"Parameters", "Other Parameters", "Receives", "Attributes"}
PACKAGE = "toeplitz_conv"


def _lookup(scope: griffe.Object, dotted: str) -> str | None:
    """The full path of ``dotted`` if its first name is a member of ``scope`` (a class's
    inherited members included; an imported name followed to where it is defined)."""
    first, _, rest = dotted.partition(".")
    try:
        member = (scope.all_members if scope.is_class else scope.members).get(first)
        if member is None:
            return None
        path = member.target_path if member.is_alias else member.path
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return f"{path}.{rest}" if rest else path


def _identifier(target: str, obj: griffe.Object) -> str:
    """The full dotted path a role names, looked up from ``obj`` as Sphinx would: the object's
    class, its module, then the package's public names."""
    if target.startswith("."):  # relative to the package of the object's module
        module = obj.module
        base = module.path if module.is_package else module.parent.path
        return base + target
    if target == PACKAGE or target.startswith(PACKAGE + "."):
        return target
    scopes = [o for o in (obj, obj.parent) if o is not None and o.is_class] + [obj.module]
    for scope in scopes:
        if path := _lookup(scope, target):
            return path
    return f"{PACKAGE}.{target}"  # a public name (conv_matrix, Network.to_mlp)


def _role(match: re.Match, obj: griffe.Object) -> str:
    target = match["target"].strip()
    short = target.startswith("~")
    target = target.lstrip("~")
    shown = target.rsplit(".", 1)[-1] if short else target.lstrip(".")
    return f'<autoref identifier="{_identifier(target, obj)}" optional><code>{shown}</code></autoref>'


def _plain(type_text: str) -> str:
    """A type as plain text: a role shows its (short) name, double backticks go."""
    def name(match: re.Match) -> str:
        target = match["target"].strip()
        return target.lstrip("~").rsplit(".", 1)[-1] if target.startswith("~") else target.lstrip(".")
    return _ROLE.sub(name, type_text).replace("``", "")


def plain_item_types(text: str) -> str:
    """The items of the numpydoc sections as the site should show them: their types as plain
    text (the site prints a type verbatim), and an item naming several parameters (``stride,
    padding : ...``) split into one item per name, each with the shared description, so that
    each shows its own annotation and default from the signature (mkdocstrings gives all the
    names the first one's). Descriptions and other sections are left alone."""
    lines = text.split("\n")
    out: list[str] = []
    section = None
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if i < len(lines) and line and not line[0].isspace() and _UNDERLINE.match(lines[i]):
            section = line.strip()
        elif section in _ITEM_SECTIONS and line and not line[0].isspace() and not _UNDERLINE.match(line):
            names, colon, kind = line.partition(" : ")
            if not colon:  # a bare type (Returns, Raises), or names without a type
                names, kind = (line, "") if section in _NAMED_SECTIONS else ("", line)
            kind = _plain(kind)
            start = i  # the description: the indented (or blank) lines that follow
            while i < len(lines) and (not lines[i].strip() or lines[i][0].isspace()):
                i += 1
            description = lines[start:i]
            split = names.split(", ") if section in _NAMED_SECTIONS else [names]
            for name in split:
                out.append(f"{name}{colon}{kind}" if name else kind)
                out.extend(description)
            continue
        out.append(line)
    return "\n".join(out)


def markdown_docstring(text: str, obj: griffe.Object) -> str:
    text = plain_item_types(text)
    text = _ROLE.sub(lambda m: _role(m, obj), text)
    text = _LONE_LITERAL.sub("", text)
    return _LITERAL.sub(":", text)


def _objects(obj: griffe.Object):
    """``obj`` and everything defined in it (aliases are someone else's objects)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


class RestToMarkdown(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        # once the whole package is loaded, so that a role can be looked up in any module
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = markdown_docstring(obj.docstring.value, obj)
