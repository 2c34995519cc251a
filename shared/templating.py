"""Message templates: sandboxed Jinja2 shared by the designer (preview, checks) and activator.

A template sees ``profile`` (the profile's attributes), ``event`` (``name`` and
``properties`` of the event that triggered the journey or stage), ``journey`` and ``step``.
Rendering never crashes its caller: a missing variable renders empty, and anything else that
goes wrong inside a template (unsafe access, a runtime error, output over the bound) becomes
one ``TemplateError`` whose message can be recorded as a failure reason.

Templates are written by tenants, so one of them must not be able to stall a service that
every tenant shares. The sandbox refuses what would allocate past the output bound before
it allocates (repetition, powers, padding filters and format widths, ranges), and
``Renderer`` (``shared.rendering``) renders whatever could still run long (many tags, nested
loops or loops over long lists, macros, calls, assignments, filters outside a short list)
in worker processes under a wall-clock and a memory budget; only templates whose cost is
linear in their source and context, which ``inline_safe`` recognises from the compiled tree
and the lengths of the lists it loops over, are rendered in the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sized
from dataclasses import dataclass
from functools import lru_cache
from types import BuiltinMethodType, MethodType, TracebackType
from typing import Any, NoReturn

from jinja2 import ChainableUndefined, Template, nodes
from jinja2 import TemplateSyntaxError as JinjaSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.filters import do_batch, do_center, do_format, do_indent, do_wordwrap
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

# Big enough for a rich HTML email, small enough that a runaway loop cannot exhaust memory.
MAX_OUTPUT_CHARS = 512 * 1024
# Ranges feed loops; a template has no business iterating more than this.
MAX_RANGE = 10_000
# Placeholder text is for previews; this many paragraphs is plenty.
MAX_LIPSUM_PARAGRAPHS = 100
# Integer powers beyond this many bits are runaway arithmetic, not personalisation.
MAX_POWER_BITS = 4096
CACHE_SIZE = 1024
# Jinja and its sandbox probe these on any value before calling it; an undefined that
# chained them would look like an unsafe callable.
_PROBED_ATTRIBUTES = frozenset({"unsafe_callable", "alters_data", "jinja_pass_arg"})


class TemplateError(Exception):
    """A template could not be compiled or rendered; ``str(error)`` says why.

    ``limit`` names the budget it went over (``time``, ``memory``, ``output``), if that was
    the reason; it survives the trip back from a worker process."""

    def __init__(self, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit

    def __reduce__(self) -> tuple[type[TemplateError], tuple[str, str | None]]:
        return (type(self), (str(self), self.limit))


@dataclass(frozen=True)
class TemplateContent:
    subject: str | None
    body: str
    html: str | None = None
    title: str | None = None  # push: the notification's title
    data: Mapping[str, str] | None = None  # push: key-value data, each value a template


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str
    html: str | None
    title: str | None = None
    data: dict[str, str] | None = None


class LenientUndefined(ChainableUndefined):
    """Renders empty whatever is done to it, so a missing attribute never fails a message.

    ``{{ profile.missing.deeper }}``, ``{{ profile.points + 1 }}`` and
    ``{% if profile.age > 18 %}`` all work on a profile without those attributes.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> LenientUndefined:
        if name in _PROBED_ATTRIBUTES:
            raise AttributeError(name)
        super().__getattr__(name)  # raises for dunder names, as Python's protocols expect
        return self

    def _chain(self, *_args: Any, **_kwargs: Any) -> LenientUndefined:
        return self

    def _never(self, _other: Any) -> bool:
        return False

    # The base class types these as never returning; here they return on purpose.
    __add__ = __radd__ = __sub__ = __rsub__ = _chain  # type: ignore[assignment]
    __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _chain  # type: ignore[assignment]
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _chain  # type: ignore[assignment]
    __pow__ = __rpow__ = __pos__ = __neg__ = __call__ = _chain  # type: ignore[assignment]
    __lt__ = __le__ = __gt__ = __ge__ = _never  # type: ignore[assignment]

    def __int__(self) -> int:  # type: ignore[override]
        return 0

    def __float__(self) -> float:  # type: ignore[override]
        return 0.0


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox with unsafe access made loud and size-multiplying operators bounded."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, *, html: bool) -> None:
        super().__init__(autoescape=html, undefined=LenientUndefined, cache_size=0)
        self.globals["range"] = _bounded_range
        self.filters.update(
            center=_padding(do_center, "width"),
            indent=_padding(do_indent, "width"),
            wordwrap=_padding(do_wordwrap, "width", skip=1),
            batch=_padding(do_batch, "linecount"),
            slice=_padding(self.filters["slice"], "slices", skip=1),
            format=_checked_format,
        )
        self.globals["lipsum"] = _bounded_lipsum

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Profiles and events are JSON objects: `cart.items` is the key "items", not the
        # dict method of that name (a key the object lacks still finds nothing unsafe).
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        # The stock sandbox returns an undefined that a lenient undefined would render
        # empty; an attempt to escape the sandbox must fail the render instead.
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_repeat(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_widths(left)
        return self.binop_table[operator](left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # str methods that pad allocate their whole width before any bound can be checked.
        padding = isinstance(__obj, BuiltinMethodType) and __obj.__name__ in _PADDING_METHODS
        if padding and isinstance(__obj.__self__, str):
            _check_width([*args, *kwargs.values()][:1])
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if isinstance(value, MethodType | BuiltinMethodType) and isinstance(value.__self__, str):
            _check_widths(value.__self__)
        return super().wrap_str_format(value)


def _bounded_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise SecurityError(f"range() of more than {MAX_RANGE} items")
    return rng


def _check_repeat(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
        if sized and len(seq) * times > MAX_OUTPUT_CHARS:
            raise TemplateError(
                f"repetition would exceed {MAX_OUTPUT_CHARS} characters (the output limit)",
                "output",
            )


# str methods whose first argument is a width the result is padded to.
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
# A width or precision in a printf-style or str.format specification.
_FORMAT_SPEC = re.compile(r"%[^a-zA-Z%]*|\{[^{}]*\}")
_NUMBER = re.compile(r"\d+")


def _check_width(values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, int) and value > MAX_OUTPUT_CHARS:
            raise TemplateError(
                f"a width or count over {MAX_OUTPUT_CHARS} (the output limit)", "output"
            )


def _check_widths(fmt: str) -> None:
    """Refuses a format string whose widths or precisions pad past the output bound."""
    for spec in _FORMAT_SPEC.findall(fmt):
        _check_width(int(n) for n in _NUMBER.findall(spec))


def _padding(filter_: Callable[..., Any], name: str, skip: int = 0) -> Callable[..., Any]:
    """A padding filter that checks its width (the first argument after ``skip`` leading
    ones it is passed, or ``name``) before the padded string is built."""

    def bounded(*args: Any, **kwargs: Any) -> Any:
        given = args[1 + skip : 2 + skip] or [kwargs.get(name)]
        _check_width(given)
        return filter_(*args, **kwargs)

    # Jinja passes the environment to filters marked so (wordwrap is).
    bounded.__dict__.update(filter_.__dict__)
    return bounded


def _bounded_lipsum(n: int = 5, *args: Any, **kwargs: Any) -> str:
    if isinstance(n, int) and n > MAX_LIPSUM_PARAGRAPHS:
        raise TemplateError(
            f"lipsum() of more than {MAX_LIPSUM_PARAGRAPHS} paragraphs (the output limit)",
            "output",
        )
    return str(generate_lorem_ipsum(n, *args, **kwargs))


def _checked_format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_widths(str(value))
    return do_format(value, *args, **kwargs)


def _check_power(base: Any, exponent: Any) -> None:
    ints = isinstance(base, int) and isinstance(exponent, int)
    if ints and abs(base) > 1 and base.bit_length() * exponent > MAX_POWER_BITS:
        raise SecurityError("power result too large")


_TEXT = _Environment(html=False)
_HTML = _Environment(html=True)


# A path into the context a loop iterates over: ``event.properties['items']`` is
# ("event", "properties", "items").
_Path = tuple[str | int, ...]


@dataclass(frozen=True)
class _Compiled:
    template: Template
    inline: bool  # its cost is linear in its source and context (see ``_inline_plan``)...
    loops: tuple[_Path, ...] = ()  # ...given that these lists are short enough


@lru_cache(maxsize=CACHE_SIZE)
def _compiled(source: str, html: bool) -> _Compiled:
    """Compiles once per distinct source; the same few templates render many times."""
    env = _HTML if html else _TEXT
    try:
        tree = env.parse(source)
        return _Compiled(env.from_string(tree), *_inline_plan(tree))
    except (RecursionError, MemoryError):
        # Deeply nested expressions exhaust the compiler's stack: an error in the template.
        raise JinjaSyntaxError("the template is nested too deeply", 1) from None


def _compile(source: str, html: bool) -> Template:
    return _compiled(source, html).template


# Nodes whose evaluation costs no more than their operands: no loops, no calls, no names
# bound to a value a later statement can double, no operator that multiplies a size.
_LINEAR_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Const, nodes.Name, nodes.Getattr,
    nodes.Getitem, nodes.Slice, nodes.If, nodes.CondExpr, nodes.And, nodes.Or, nodes.Not,
    nodes.Compare, nodes.Operand, nodes.Add, nodes.Sub, nodes.Div, nodes.FloorDiv, nodes.Neg,
    nodes.Pos, nodes.Concat, nodes.Filter, nodes.Test, nodes.List, nodes.Tuple, nodes.Dict,
    nodes.Pair, nodes.Keyword, nodes.MarkSafeIfAutoescape, nodes.ScopedEvalContextModifier,
    nodes.EvalContextModifier,
)  # fmt: skip
# Filters whose result is at most a small multiple of their input, given constant arguments.
_LINEAR_FILTERS = frozenset({
    "abs", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "filesizeformat",
    "first", "float", "forceescape", "int", "items", "join", "last", "length", "list", "lower",
    "max", "min", "reverse", "round", "safe", "sort", "string", "striptags", "sum", "title",
    "tojson", "trim", "truncate", "unique", "upper", "urlencode", "wordcount",
})  # fmt: skip
# A separator is repeated between every item of a list that comes from the context.
_MAX_INLINE_SEPARATOR = 16


# A loop over a list in the context is rendered inline up to this many items (a cart's
# lines); with at most ``MAX_INLINE_TAGS`` tags in all, that is a few milliseconds at most.
MAX_INLINE_ITEMS = 50


def _inline_plan(tree: nodes.Template) -> tuple[bool, tuple[_Path, ...]]:
    """Whether rendering ``tree`` costs no more than reading its source and context, given
    that the lists its loops iterate over are short (the paths returned): such a template
    is rendered in the caller; any other goes to a worker process. A loop qualifies when it
    iterates over a path into the context and holds no other loop."""
    loops: list[_Path] = []
    for node in tree.find_all(nodes.Node):
        if isinstance(node, nodes.For):
            path = _path(node.iter)
            if path is None or node.recursive or next(node.find_all(nodes.For), None):
                return False, ()
            loops.append(path)
        elif not _linear(node):
            return False, ()
    return True, tuple(loops)


def _path(node: nodes.Node) -> _Path | None:
    if isinstance(node, nodes.Name):
        return (node.name,)
    if isinstance(node, nodes.Getattr) and (path := _path(node.node)) is not None:
        return (*path, node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        key = node.arg.value
        if isinstance(key, str | int) and (path := _path(node.node)) is not None:
            return (*path, key)
    return None


def _short(context: Mapping[str, Any], path: _Path) -> bool:
    """Whether what ``path`` names in ``context`` iterates over few items (or fails at
    once: a missing value iterates over nothing, a number raises)."""
    value: Any = context
    for key in path:
        if value is None:
            return True  # its attributes are undefined
        if isinstance(value, Mapping):
            if key not in value:
                return True
            value = value[key]
        elif isinstance(value, list | tuple) and isinstance(key, int):
            if not -len(value) <= key < len(value):
                return True
            value = value[key]
        else:
            return False  # something else's attribute: not worth guessing
    if isinstance(value, Sized):
        return len(value) <= MAX_INLINE_ITEMS
    return value is None or isinstance(value, int | float)


def _linear(node: nodes.Node) -> bool:
    if not isinstance(node, _LINEAR_NODES):
        return False
    if isinstance(node, nodes.Filter):
        return _linear_filter(node)
    return True


def _linear_filter(node: nodes.Filter) -> bool:
    if node.name not in _LINEAR_FILTERS or node.dyn_args or node.dyn_kwargs:
        return False
    if node.name in ("d", "default"):
        return True  # its argument is an expression like any other
    if node.name == "tojson":
        return not node.args and not node.kwargs  # an indent pads every line
    arguments = [*node.args, *(kw.value for kw in node.kwargs)]
    if not all(isinstance(arg, nodes.Const) for arg in arguments):
        return False
    if node.name == "join":
        return all(len(str(arg.value)) <= _MAX_INLINE_SEPARATOR for arg in arguments)  # type: ignore[attr-defined]
    return True


# Compiling costs about 75 µs per tag (``{{``, ``{%``); a static page of any size compiles in
# milliseconds. A template with more tags than this is compiled in a worker.
MAX_INLINE_TAGS = 200


def compiles_quickly(content: TemplateContent) -> bool:
    """Whether compiling ``content`` takes at most a few milliseconds (judged by counting
    its tags, without compiling it), so it may be compiled in the caller."""
    tags = sum(_tags(source) for _name, source in _fields(content) if source is not None)
    return tags <= MAX_INLINE_TAGS


@lru_cache(maxsize=CACHE_SIZE)
def _tags(source: str) -> int:
    return source.count("{{") + source.count("{%") + source.count("{#")


def inline_safe(content: TemplateContent, context: Mapping[str, Any]) -> bool:
    """Every part of ``content`` compiles quickly and can be rendered with ``context`` in
    the caller (a part that does not compile renders its error at once, wherever it is
    rendered)."""
    if not compiles_quickly(content):
        return False
    for name, source in _fields(content):
        if source is None:
            continue
        try:
            compiled = _compiled(source, name == "html")
        except JinjaSyntaxError:
            continue
        if not compiled.inline or not all(_short(context, path) for path in compiled.loops):
            return False
    return True


def check(source: str) -> str | None:
    """The syntax error in ``source`` (with its line), or None if it compiles."""
    try:
        _compile(source, False)
    except JinjaSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    return None


def check_content(content: TemplateContent) -> dict[str, str]:
    """Syntax errors per field name (``subject``, ``body``, ``html``, ``title``, ``data.<key>``);
    empty when all compile."""
    errors: dict[str, str] = {}
    for name, source in _fields(content):
        if source is not None and (message := check(source)) is not None:
            errors[name] = message
    return errors


def render(
    content: TemplateContent, context: Mapping[str, Any], *, max_chars: int = MAX_OUTPUT_CHARS
) -> Rendered:
    """Renders every part of ``content``; raises only ``TemplateError``."""
    values = dict(context)
    subject = _render_part("subject", content.subject, values, html=False, limit=max_chars)
    body = _render_part("body", content.body, values, html=False, limit=max_chars)
    html = _render_part("html", content.html, values, html=True, limit=max_chars)
    title = _render_part("title", content.title, values, html=False, limit=max_chars)
    data = None
    if content.data is not None:
        data = {
            key: _render_part(f"data.{key}", source, values, html=False, limit=max_chars) or ""
            for key, source in content.data.items()
        }
    assert body is not None
    return Rendered(subject=subject, body=body, html=html, title=title, data=data)


def render_text(
    source: str,
    context: Mapping[str, Any],
    *,
    html: bool = False,
    max_chars: int = MAX_OUTPUT_CHARS,
) -> str:
    """Renders one template string with the same rules as ``render``."""
    out = _render_part("template", source, context, html=html, limit=max_chars)
    assert out is not None
    return out


def _fields(content: TemplateContent) -> Iterable[tuple[str, str | None]]:
    yield from (("subject", content.subject), ("body", content.body), ("html", content.html))
    yield ("title", content.title)
    yield from ((f"data.{key}", source) for key, source in (content.data or {}).items())


def _render_part(
    name: str, source: str | None, context: Mapping[str, Any], *, html: bool, limit: int
) -> str | None:
    if source is None:
        return None
    try:
        template = _compile(source, html)
    except JinjaSyntaxError as exc:
        raise TemplateError(f"{name}, line {exc.lineno}: {exc.message}") from None
    try:
        return _bounded(template.generate(dict(context)), limit)
    except TemplateError as exc:
        raise TemplateError(f"{name}{_at_line(exc)}: {exc}", exc.limit) from None
    except MemoryError:
        raise TemplateError(
            f"{name}: rendering needs more than the memory limit", "memory"
        ) from None
    except SecurityError as exc:
        raise TemplateError(f"{name}{_at_line(exc)}: not allowed: {exc}") from None
    except Exception as exc:
        # Template code can raise anything (TypeError, ZeroDivisionError, RecursionError...);
        # none of it may escape to the worker.
        kind = type(exc).__name__
        raise TemplateError(f"{name}{_at_line(exc)}: {kind}: {exc}") from None


def _bounded(chunks: Iterable[str], limit: int) -> str:
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TemplateError(f"output exceeds {limit} characters (the output limit)", "output")
        parts.append(chunk)
    return "".join(parts)


def _at_line(exc: BaseException) -> str:
    """``, line N`` of the innermost template frame in the traceback, if any."""
    line = None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return f", line {line}" if line is not None else ""


__all__ = [
    "MAX_OUTPUT_CHARS",
    "Rendered",
    "TemplateContent",
    "TemplateError",
    "check",
    "check_content",
    "compiles_quickly",
    "inline_safe",
    "render",
    "render_text",
]
