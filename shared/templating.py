"""Message templates: sandboxed Jinja2 shared by the designer (preview, checks) and activator.

A template sees ``profile`` (the profile's attributes), ``event`` (``name`` and
``properties`` of the event that triggered the journey or stage), ``journey`` and ``step``.
Rendering never crashes its caller: a missing variable renders empty, and anything else that
goes wrong inside a template (unsafe access, a runtime error, output over the bound) becomes
one ``TemplateError`` whose message can be recorded as a failure reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import Any, NoReturn

from jinja2 import ChainableUndefined, Template
from jinja2 import TemplateSyntaxError as JinjaSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Big enough for a rich HTML email, small enough that a runaway loop cannot exhaust memory.
MAX_OUTPUT_CHARS = 512 * 1024
# Ranges feed loops; a template has no business iterating more than this.
MAX_RANGE = 10_000
# Integer powers beyond this many bits are runaway arithmetic, not personalisation.
MAX_POWER_BITS = 4096
CACHE_SIZE = 1024
# Jinja and its sandbox probe these on any value before calling it; an undefined that
# chained them would look like an unsafe callable.
_PROBED_ATTRIBUTES = frozenset({"unsafe_callable", "alters_data", "jinja_pass_arg"})


class TemplateError(Exception):
    """A template could not be compiled or rendered; ``str(error)`` says why."""


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

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, *, html: bool) -> None:
        super().__init__(autoescape=html, undefined=LenientUndefined, cache_size=0)
        self.globals["range"] = _bounded_range

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
        return self.binop_table[operator](left, right)


def _bounded_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise SecurityError(f"range() of more than {MAX_RANGE} items")
    return rng


def _check_repeat(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
        if sized and len(seq) * times > MAX_OUTPUT_CHARS:
            raise SecurityError("repetition would exceed the output size limit")


def _check_power(base: Any, exponent: Any) -> None:
    ints = isinstance(base, int) and isinstance(exponent, int)
    if ints and abs(base) > 1 and base.bit_length() * exponent > MAX_POWER_BITS:
        raise SecurityError("power result too large")


_TEXT = _Environment(html=False)
_HTML = _Environment(html=True)


@lru_cache(maxsize=CACHE_SIZE)
def _compile(source: str, html: bool) -> Template:
    """Compiles once per distinct source; the same few templates render many times."""
    env = _HTML if html else _TEXT
    return env.from_string(source)


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
        raise TemplateError(f"{name}: {exc}") from None
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
            raise TemplateError(f"output exceeds {limit} characters")
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
    "render",
    "render_text",
]
