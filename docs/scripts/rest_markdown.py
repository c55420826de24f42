"""reST inline markup in nova's docstrings -> Markdown, for the API reference.

nova's docstrings are Google-style sections (``Args:``, ``Raises:``) written with reST
inline markup, which help() and IDEs show as is.  :func:`rest_to_markdown` turns that
markup into Markdown before mkdocstrings renders it (``griffe_rest.py`` applies it to
every docstring griffe loads):

* ``:class:`~nova.Emitter``` (and ``:meth:``, ``:func:``, ``:attr:``, ``:data:``,
  ``:mod:``, ``:exc:``, ``:obj:``, ``:const:``) become code spans (``~`` keeps the last
  dotted part, as Sphinx does);
* double-backtick literals become single-backtick code spans;
* ``.. versionadded:: X`` (and ``versionchanged``, ``deprecated``) become a sentence;
* a paragraph ending in ``::`` followed by an indented block becomes a fenced block.

Plain Python (no griffe), so the test suite checks it on every docstring of nova.
"""

from __future__ import annotations

import re

#: the Python-domain roles the docstrings use (``:py:<role>:`` too).
ROLES = ("class", "meth", "func", "attr", "data", "mod", "exc", "obj", "const")
_ROLE = re.compile(rf":(?:py:)?(?:{'|'.join(ROLES)}):`(~?)([^`]+)`")
#: a double-backtick literal, which may wrap onto the next line (not across a blank line)
_LITERAL = re.compile(r"``((?:(?!\n[ \t]*\n)[^`]|`(?!`))+?)``")
_FENCED = re.compile(r"^([ \t]*)```.*?^\1```[ \t]*$", re.S | re.M)
_DIRECTIVE = re.compile(r"^(\s*)\.\. (versionadded|versionchanged|deprecated):: *(.*)$")
_WORDS = {"versionadded": "Added in version", "versionchanged": "Changed in version",
          "deprecated": "Deprecated since version"}


def _role(m: re.Match[str]) -> str:
    target = m.group(2).strip()
    if target.endswith("()"):
        target = target[:-2]
    if m.group(1):
        target = target.rsplit(".", 1)[-1]
    return f"``{target}``"


def _literal(m: re.Match[str]) -> str:
    body = m.group(1)
    return f"`` {body} ``" if "`" in body else f"`{body}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _literal_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and not _DIRECTIVE.match(line):
            base = _indent(line)
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            k = j
            while k < len(lines) and (not lines[k].strip() or _indent(lines[k]) > base):
                k += 1
            block = lines[j:k]
            while block and not block[-1].strip():
                block.pop()
            if block:
                text = line.rstrip()[:-2].rstrip()
                if text.strip():
                    out.append(text + ":")
                    out.append("")
                cut = min(_indent(b) for b in block if b.strip())
                pad = " " * base
                out.append(pad + "```")
                out.extend(pad + b[cut:] if b.strip() else "" for b in block)
                out.append(pad + "```")
                out.append("")
                i = k
                continue
        out.append(line)
        i += 1
    return out


def rest_to_markdown(text: str) -> str:
    """*text* (a docstring) with its reST inline markup turned into Markdown."""
    lines = _literal_blocks(text.splitlines())
    converted = []
    for line in lines:
        d = _DIRECTIVE.match(line)
        if d:
            converted.append(f"{d.group(1)}*{_WORDS[d.group(2)]} {d.group(3).strip()}.*")
            continue
        converted.append(line)
    text = _ROLE.sub(_role, "\n".join(converted))
    # literals outside fenced blocks only (a fence's ``` is not a literal)
    out, last = [], 0
    for m in _FENCED.finditer(text):
        out.append(_LITERAL.sub(_literal, text[last:m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(_LITERAL.sub(_literal, text[last:]))
    return "".join(out)
