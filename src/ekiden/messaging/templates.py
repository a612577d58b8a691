"""Marketers' templates run in Jinja2's sandbox: they are untrusted input.

Semantics (docs/EMAIL.md):
- a name that does not exist (``{{ contcat.name }}``, an unknown custom field) is an error
  when the template is saved, naming the part, the line and the name;
- a field that exists but is empty for this contact renders as nothing, and
  ``default('…')`` (alias ``d``) replaces it: ``{{ contact.last_name | default('お客') }}様``;
- anything that reaches outside the sandbox (``__class__``, private attributes) is an error;
- HTML parts are auto-escaped; subject, preheader and text parts are not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from types import TracebackType
from typing import Any

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ekiden.errors import Invalid
from ekiden.messaging.context import RECORD_FIELDS, TOP_LEVEL

TEMPLATE_FILENAME = "<template>"
_JINJA_NAMES = frozenset(("loop", "super", "self", "caller", "varargs", "kwargs"))
PARTS = ("subject", "preheader", "html", "text")


class TemplateProblem(Invalid):
    """A template part that does not compile, uses an unknown name or leaves the sandbox.
    ``details`` names the part, the line (when known) and the variable (when one is at fault)."""

    code = "invalid_template"


def _default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    if isinstance(value, Undefined) or value is None or value == "":
        return default_value
    if boolean and not value:
        return default_value
    return value


def _blank(value: Any) -> Any:
    return "" if value is None else value


MAX_OUTPUT = 2 * 1024 * 1024  # characters of one rendered part
_MAX_REPEAT = 10_000
_MAX_EXPONENT = 100


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, also refusing expressions that would exhaust memory
    (``'x' * 10**9``) in the worker that renders a whole send."""

    intercepted_binops = frozenset(("*", "**"))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > _MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is too large")
        if operator == "*":
            for count, other in ((left, right), (right, left)):
                repeated = isinstance(count, int) and isinstance(other, str | list | tuple)
                if repeated and count > _MAX_REPEAT:
                    raise SecurityError(f"repeating {count} times is too many")
        return super().call_binop(context, operator, left, right)


def _environment(*, html: bool) -> ImmutableSandboxedEnvironment:
    env = _Sandbox(
        undefined=StrictUndefined,
        autoescape=html,
        finalize=_blank,
        keep_trailing_newline=True,
    )
    env.filters["default"] = _default
    env.filters["d"] = _default
    return env


_HTML = _environment(html=True)
_PLAIN = _environment(html=False)


@lru_cache(maxsize=512)
def compiled(part: str, source: str) -> Template:
    """The compiled template of one part (cached: a send renders the same source many times).
    Raises TemplateProblem when it does not compile."""
    env = _HTML if part == "html" else _PLAIN
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(
            f"{part}, line {exc.lineno}: {exc.message}",
            details={"part": part, "line": exc.lineno},
        ) from None


def _template_line(tb: TracebackType | None) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_part(part: str, source: str, context: Mapping[str, Any]) -> str:
    """Render one part; TemplateProblem (with the line) when it fails."""
    template = compiled(part, source)
    try:
        rendered = template.render(context)
    except SecurityError as exc:
        line = _template_line(exc.__traceback__)
        raise TemplateProblem(
            f"{part}, line {line}: not allowed in a template ({exc})",
            details={"part": part, "line": line},
        ) from None
    except UndefinedError as exc:
        line = _template_line(exc.__traceback__)
        raise TemplateProblem(
            f"{part}, line {line}: {exc.message}",
            details={"part": part, "line": line},
        ) from None
    except Exception as exc:  # a marketer's expression may fail in any way (1 / 0, "a" + 1)
        line = _template_line(exc.__traceback__)
        raise TemplateProblem(
            f"{part}, line {line}: {type(exc).__name__}: {exc}",
            details={"part": part, "line": line},
        ) from None
    if len(rendered) > MAX_OUTPUT:
        raise TemplateProblem(
            f"{part}: renders to more than {MAX_OUTPUT} characters", details={"part": part}
        )
    return rendered


def _names(node: nodes.Node) -> Iterator[tuple[str, list[str], int]]:
    """Every (name, attribute path, line) the template reads, e.g. ("contact", ["custom",
    "budget"], 3) for ``contact.custom.budget``; the path is empty for a bare name and stops
    where a key is computed (``contact[key]``)."""
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        path: list[str] = []
        current: nodes.Node = node
        while isinstance(current, nodes.Getattr | nodes.Getitem):
            if isinstance(current, nodes.Getattr):
                path.insert(0, current.attr)
            elif isinstance(current.arg, nodes.Const) and isinstance(current.arg.value, str):
                path.insert(0, current.arg.value)
            else:
                path = []  # a computed key: cannot be followed statically
                yield from _names(current.arg)
            current = current.node
        if isinstance(current, nodes.Name) and current.ctx == "load":
            yield current.name, path, node.lineno
        else:
            yield from _names(current)
        return
    if isinstance(node, nodes.Name) and node.ctx == "load":
        yield node.name, [], node.lineno
        return
    for child in node.iter_child_nodes():
        yield from _names(child)


@lru_cache(maxsize=512)
def names_used(sources: tuple[str, ...]) -> frozenset[str]:
    """What templates read, as ``name`` and ``name.attribute`` entries (``contact.segments``);
    ``name.*`` when a name is used whole or with a computed key. Lets the sender load only the
    data a template needs."""
    used: set[str] = set()
    for source in sources:
        if not source:
            continue
        for name, path, _ in _names(_PLAIN.parse(source)):
            used.add(name)
            used.add(f"{name}.{path[0]}" if path else f"{name}.*")
    return frozenset(used)


def check_part(part: str, source: str, custom_keys: tuple[str, ...]) -> None:
    """Raise TemplateProblem when ``source`` does not compile, reads a name that does not
    exist or touches a private attribute (``_…``)."""
    env = _HTML if part == "html" else _PLAIN
    compiled(part, source)
    tree = env.parse(source)
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for found in tree.find_all(nodes.Getattr):
        if found.attr.startswith("_"):
            raise TemplateProblem(
                f"{part}, line {found.lineno}: {found.attr!r} is not allowed in a template",
                details={"part": part, "line": found.lineno, "variable": found.attr},
            )
    for name, path, line in _names(tree):
        for attribute in (name, *path):
            if attribute.startswith("_"):
                raise TemplateProblem(
                    f"{part}, line {line}: {attribute!r} is not allowed in a template",
                    details={"part": part, "line": line, "variable": attribute},
                )
        if name in assigned or name in env.globals or name in _JINJA_NAMES:
            continue
        if name not in TOP_LEVEL:
            raise TemplateProblem(
                f"{part}, line {line}: unknown variable {name!r}",
                details={"part": part, "line": line, "variable": name},
            )
        allowed = RECORD_FIELDS.get(name)
        if not path or allowed is None:
            continue
        if path[0] not in allowed:
            dotted = f"{name}.{path[0]}"
            raise TemplateProblem(
                f"{part}, line {line}: unknown variable {dotted!r}",
                details={"part": part, "line": line, "variable": dotted},
            )
        custom = name == "contact" and path[0] == "custom" and len(path) > 1
        if custom and path[1] not in custom_keys:
            dotted = f"contact.custom.{path[1]}"
            raise TemplateProblem(
                f"{part}, line {line}: unknown custom field {dotted!r}",
                details={"part": part, "line": line, "variable": dotted},
            )
