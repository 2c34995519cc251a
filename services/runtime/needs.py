"""What of a profile a message needs: the attributes its template reads.

An activation used to carry the whole profile, so its size grew with the profile and every
message about a large profile was large. Now it carries the attributes its template names
(``{{ profile.first_name }}``, ``{{ profile["plan"] }}``) and ``timezone``, which the
activator's quiet hours read; the recipient, consent and the trigger event travel in fields
of their own. The template is read from the designer (cached for a few seconds, as the
activator caches it) and its syntax tree walked; a template that uses the profile in a way
no list of names can say (``{{ profile }}``, ``profile.items()``, ``profile[key]``, a
variable named ``profile`` of its own) gets the whole profile, which the profile cap
bounds. So does any activation whose template the designer could not give: trimming is a
saving, never a reason for a message to wait.

Why here and not in the activator: the runtime has the profile in hand when it requests the
message, while the activator would have to ask the runtime for it on every delivery. The
template is read when the message is requested; one edited afterwards to name an attribute
it did not name before renders that attribute empty for the messages requested before the
edit (the one staleness this design has, the same as a profile changed in between).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from jinja2 import Environment, TemplateSyntaxError, nodes

from shared.http import get_json
from shared.logging import get_logger

log = get_logger(__name__)

# Read by the activator whatever the template says (quiet hours in the profile's zone).
ALWAYS = frozenset({"timezone"})
# The template's parts that are rendered with the context.
PARTS = ("subject", "body", "html", "title")
# ``profile.get`` or ``profile.items`` is the dict's method unless an attribute has that name.
_MAPPING_METHODS = frozenset(dir(dict))
_PARSER = Environment()


def profile_fields(sources: Iterable[str | None]) -> frozenset[str] | None:
    """The profile attributes the template sources read, or None when they may read any."""
    names: set[str] = set()
    for source in sources:
        if not source:
            continue
        try:
            tree = _PARSER.parse(source)
        except TemplateSyntaxError:
            return None  # it fails at rendering; nothing to save
        found = _fields_of(tree)
        if found is None:
            return None
        names |= found
    return frozenset(names)


def _fields_of(tree: nodes.Template) -> set[str] | None:
    if any(True for _ in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport,
                                         nodes.Extends))):  # fmt: skip
        return None
    named: set[str] = set()
    read = 0
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == "profile"):
            continue
        if isinstance(node, nodes.Getattr):
            key: object = node.attr
        else:
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
        if not isinstance(key, str) or key in _MAPPING_METHODS:
            return None
        named.add(key)
        read += 1
    uses = [n for n in tree.find_all(nodes.Name) if n.name == "profile"]
    if len(uses) != read or any(n.ctx != "load" for n in uses):
        return None  # used whole, passed on, or a variable of the template's own
    return named


def trimmed(profile: Mapping[str, Any], fields: frozenset[str] | None) -> dict[str, Any]:
    """The part of ``profile`` a message needs (all of it when ``fields`` is None)."""
    if fields is None:
        return dict(profile)
    return {k: profile[k] for k in fields | ALWAYS if k in profile}


class TemplateNeeds:
    """The profile attributes each template reads, asked of the designer and remembered
    for ``ttl_s``."""

    def __init__(self, http: aiohttp.ClientSession, designer_url: str, ttl_s: float = 5.0):
        self._http = http
        self._url = designer_url
        self._ttl_s = ttl_s
        self._known: dict[tuple[str, str], tuple[float, frozenset[str] | None]] = {}

    async def fields(self, workspace_id: str, template_id: str) -> frozenset[str] | None:
        key = (workspace_id, template_id)
        hit = self._known.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await self._ask(workspace_id, template_id)
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[key] = (now + self._ttl_s, found)
        return found

    async def _ask(self, workspace_id: str, template_id: str) -> frozenset[str] | None:
        url = f"{self._url}/internal/workspaces/{workspace_id}/templates/{template_id}"
        try:
            status, body = await get_json(self._http, url)
        except Exception as exc:
            log.warning("runtime.template_unread", template_id=template_id, error=repr(exc))
            return None
        if status == 404:
            return frozenset()  # deleted: the message fails at the activator, needing nothing
        if status != 200 or not isinstance(body, dict):
            log.warning("runtime.template_unread", template_id=template_id, status=status)
            return None
        data = body.get("data")
        extra = data.values() if isinstance(data, dict) else ()
        return profile_fields([*(body.get(p) for p in PARTS), *extra])
