"""Templates: personalisation, leniency with missing data, the sandbox and its bounds."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from shared.rendering import Renderer
from shared.templating import (
    MAX_INLINE_ITEMS,
    MAX_INLINE_TAGS,
    Rendered,
    TemplateContent,
    TemplateError,
    check,
    check_content,
    compiles_quickly,
    inline_safe,
    render,
    render_text,
)

CONTEXT: dict[str, Any] = {
    "profile": {"first_name": "Ada", "city": "Zürich", "tier": "gold"},
    "event": {
        "name": "cart_abandoned",
        "properties": {
            "items": [
                {"name": "Kettle", "price": 25, "qty": 1},
                {"name": "Tea <Earl Grey>", "price": 7, "qty": 3},
            ],
            "cart_url": "https://shop.example/cart?id=1&ref=mail",
        },
    },
    "journey": {"id": "j-1", "name": "Cart recovery"},
    "step": {"id": "s-2", "name": "First reminder"},
}


def test_personalises_from_profile_event_journey_and_step() -> None:
    content = TemplateContent(
        subject="{{ profile.first_name }}, you left {{ event.properties['items'] | length }} items",
        body=(
            "Hi {{ profile.first_name }} from {{ profile.city }}!\n"
            "{% for item in event.properties['items'] %}"
            "- {{ item.qty }} x {{ item.name }} at {{ item.price }}\n"
            "{% endfor %}"
            "({{ event.name }} / {{ journey.name }} / {{ step.name }})"
        ),
    )
    assert render(content, CONTEXT) == Rendered(
        subject="Ada, you left 2 items",
        body=(
            "Hi Ada from Zürich!\n"
            "- 1 x Kettle at 25\n"
            "- 3 x Tea <Earl Grey> at 7\n"
            "(cart_abandoned / Cart recovery / First reminder)"
        ),
        html=None,
    )


def test_loop_arithmetic_and_filters_work_on_cart_items() -> None:
    source = (
        "{% set ns = namespace(total=0) %}"
        "{% for item in event.properties['items'] %}{% set ns.total = ns.total"
        " + item.price * item.qty %}{% endfor %}{{ ns.total }}"
        " {{ event.properties['items'] | map(attribute='name') | join(', ') }}"
    )
    assert render_text(source, CONTEXT) == "46 Kettle, Tea <Earl Grey>"


def test_a_key_named_like_a_dict_method_is_the_key() -> None:
    """`cart.items` in an event is data, not the dict method `items`."""
    source = "{% for i in event.properties.items %}{{ i.name }};{% endfor %}{{ profile.keys }}"
    context = {**CONTEXT, "profile": {"keys": 3}}
    assert render_text(source, context) == "Kettle;Tea <Earl Grey>;3"
    # Without such a key the method is still there: `profile.items()` keeps working.
    assert render_text("{% for k, v in profile.items() %}{{ k }} {% endfor %}", CONTEXT) == (
        "first_name city tier "
    )


@pytest.mark.parametrize(
    "source",
    [
        "{{ profile.last_name }}",
        "{{ profile.missing.deeper }}",
        "{{ profile['missing']['deeper'] }}",
        "{{ nobody }}",
        "{{ nobody.knows.anything }}",
        "{{ event.properties.gone[0].name }}",
        "{{ profile.nickname.upper() }}",
        "{{ profile.points + 1 }}",
        "{% for x in event.properties.nothing %}{{ x }}{% endfor %}",
        "{% if profile.age > 18 %}adult{% endif %}",
        "{{ profile.nickname | upper }}",
    ],
)
def test_missing_variables_render_empty(source: str) -> None:
    assert render_text(source, CONTEXT) == ""
    assert render_text(source, {}) == ""


def test_default_filter_sees_a_missing_variable() -> None:
    assert render_text("Hi {{ profile.nickname | default('there') }}", CONTEXT) == "Hi there"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ profile.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ '{0.__class__}'.format(profile) }}",
        "{{ profile.update({'tier': 'platinum'}) }}",
    ],
)
def test_sandbox_blocks_unsafe_access(source: str) -> None:
    with pytest.raises(TemplateError, match="unsafe"):
        render_text(source, CONTEXT)
    assert CONTEXT["profile"]["tier"] == "gold"


def test_runtime_errors_become_template_errors_with_their_line() -> None:
    with pytest.raises(TemplateError, match=r"body, line 2: ZeroDivisionError"):
        render(TemplateContent(None, "fine\n{{ 1 / 0 }}"), CONTEXT)


def test_a_syntax_error_in_render_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match=r"subject, line 1"):
        render(TemplateContent("{{ broken", "ok"), CONTEXT)


def test_check_reports_syntax_errors_with_their_line() -> None:
    assert check("Hi {{ profile.first_name }}") is None
    message = check("Hi\nthere\n{{ profile.first_name | }}")
    assert message is not None
    assert message.startswith("line 3:")
    unclosed = check("Hi\n{% if profile.vip %}\nno end")
    assert unclosed is not None
    assert unclosed.startswith("line 2:")  # where the unclosed block opens
    assert "endif" in unclosed
    unknown_filter = check("{{ profile.first_name | shout }}")
    assert unknown_filter is not None
    assert "shout" in unknown_filter


def test_check_content_names_the_failing_fields() -> None:
    content = TemplateContent(subject="{{ ok }}", body="{% for %}", html="<p>{{ x </p>")
    assert set(check_content(content)) == {"body", "html"}
    assert check_content(TemplateContent(None, "fine")) == {}
    push = TemplateContent(None, "fine", title="{{ x", data={"ok": "{{ y }}", "link": "{% if %}"})
    assert set(check_content(push)) == {"title", "data.link"}


def test_a_push_title_and_data_values_are_rendered_like_the_body() -> None:
    content = TemplateContent(
        subject=None,
        body="{{ event.properties['items'] | length }} items",
        title="{{ profile.first_name }}, your cart",
        data={"first": "{{ event.properties['items'][0].name }}", "none": "{{ profile.nope }}"},
    )
    rendered = render(content, CONTEXT)
    assert (rendered.title, rendered.body) == ("Ada, your cart", "2 items")
    assert rendered.data == {"first": "Kettle", "none": ""}
    with pytest.raises(TemplateError, match=r"^data\.boom"):
        render(TemplateContent(None, "x", data={"boom": "{{ 1 / 0 }}"}), CONTEXT)


def test_html_is_autoescaped_but_text_and_subject_are_not() -> None:
    content = TemplateContent(
        subject="{{ event.properties['items'][1].name }}",
        body="{{ event.properties['items'][1].name }} {{ event.properties.cart_url }}",
        html=(
            "<p>{{ event.properties['items'][1].name }}</p>"
            '<a href="{{ event.properties.cart_url }}">'
        ),
    )
    rendered = render(content, CONTEXT)
    assert rendered.subject == "Tea <Earl Grey>"
    assert rendered.body == "Tea <Earl Grey> https://shop.example/cart?id=1&ref=mail"
    assert rendered.html == (
        '<p>Tea &lt;Earl Grey&gt;</p><a href="https://shop.example/cart?id=1&amp;ref=mail">'
    )


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(5000) %}{{ 'x' * 500 }}{% endfor %}",
        "{{ 'x' * 100000000 }}",
        "{{ [1] * 100000000 }}",
        "{{ 9 ** 9999999 }}",
        "{% for i in range(10000000) %}{% endfor %}",
    ],
)
def test_output_and_arithmetic_are_bounded(source: str) -> None:
    with pytest.raises(TemplateError):
        render_text(source, CONTEXT)


def test_output_bound_is_configurable() -> None:
    assert render_text("{{ 'x' * 10 }}", {}, max_chars=10) == "x" * 10
    with pytest.raises(TemplateError, match="exceeds 10 characters"):
        render_text("{{ 'x' * 11 }}", {}, max_chars=10)


def test_compiled_templates_are_cached_by_source() -> None:
    from shared.templating import _compile

    source = "cached {{ profile.first_name }}"
    assert _compile(source, False) is _compile(source, False)
    assert _compile(source, False) is not _compile(source, True)


# --- budgets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' | center(100000000) }}",
        "{{ 'x' | indent(100000000) }}",
        "{{ 'x' | wordwrap(100000000) }}",
        "{{ '%100000000s' | format('x') }}",
        "{{ '%100000000d' % 1 }}",
        "{{ 'x'.center(100000000) }}",
        "{{ 'x'.ljust(100000000) }}",
        "{{ 'x'.zfill(100000000) }}",
        "{{ '{:>100000000}'.format('x') }}",
        "{{ '{0:100000000}'.format_map({'0': 1}) }}",
        "{{ [1] | batch(100000000, 0) | list }}",
        "{{ [1] | slice(100000000) | list }}",
        "{{ lipsum(100000000) }}",
    ],
)
def test_padding_past_the_output_bound_is_refused_before_it_is_built(source: str) -> None:
    with pytest.raises(TemplateError, match="output limit") as raised:
        render_text(source, CONTEXT)
    assert raised.value.limit == "output"


def test_padding_within_the_bound_still_works() -> None:
    source = "[{{ 'ab' | center(6) }}][{{ '%5s' | format('x') }}][{{ 'x'.rjust(3) }}]"
    assert render_text(source, CONTEXT) == "[  ab  ][    x][  x]"
    assert render_text("{{ [1, 2, 3] | batch(2, 0) | list }}", CONTEXT) == "[[1, 2], [3, 0]]"
    assert render_text("{{ [1, 2, 3] | slice(2) | list }}", CONTEXT) == "[[1, 2], [3]]"
    assert render_text("{{ lipsum(1, html=False, min=5, max=6) | wordcount }}", CONTEXT) == "5"


@pytest.mark.parametrize(
    ("source", "inline"),
    [
        ("Hi {{ profile.first_name | default('there') | title }}!", True),
        ("{% if profile.tier == 'gold' %}VIP {{ event.name | upper }}{% endif %}", True),
        ("{{ event.properties['items'] | map(attribute='name') | join(', ') }}", False),
        ("{{ event.properties['items'] | length }} {{ event.properties.cart_url }}", True),
        ("{{ event.properties['items'] | join(', ') }}", True),
        ("{{ event.properties['items'] | join('x' * 3) }}", False),
        ("{{ event.properties['items'] | join('" + "-" * 17 + "') }}", False),
        ("{{ profile | tojson }}", True),
        ("{{ profile | tojson(indent=100) }}", False),
        ("{% for i in event.properties['items'] %}{{ i.name }}{% endfor %}", True),
        ("{% for i in event.properties.items if i.qty > 1 %}{{ loop.index }}{% endfor %}", True),
        ("{% for c in profile.first_name %}{{ c }}{% endfor %}", True),
        ("{% for i in profile.nothing.at_all %}{{ i }}{% endfor %}", True),
        ("{% for i in event.properties['items'] %}{% for j in i %}{% endfor %}{% endfor %}", False),
        ("{% for i in range(3) %}{{ i }}{% endfor %}", False),
        ("{% for i in event.properties['items'] | sort %}{{ i }}{% endfor %}", False),
        ("{% for i in event.properties['items'] recursive %}{{ loop(i) }}{% endfor %}", False),
        ("{% for i in event.properties['items'] %}{{ loop.cycle('a', 'b') }}{% endfor %}", False),
        ("{{ profile.first_name.upper() }}", False),
        ("{% set a = profile.first_name ~ profile.first_name %}{{ a }}", False),
        ("{% macro m() %}x{% endmacro %}{{ m() }}", False),
        ("{{ profile.first_name | center(9) }}", False),
        ("{{ profile.points * 2 }}", False),
        ("{{ '%s' % profile.first_name }}", False),
        ("{{ profile.first_name | truncate(profile.points) }}", False),
    ],
)
def test_only_templates_of_linear_cost_render_inline(source: str, inline: bool) -> None:
    assert inline_safe(TemplateContent(None, source), CONTEXT) is inline
    assert inline_safe(TemplateContent("Hi", "there", html=source), CONTEXT) is inline


def test_a_loop_over_a_long_list_renders_in_a_worker() -> None:
    loop = TemplateContent(None, "{% for i in event.properties['items'] %}{{ i }}{% endfor %}")
    items = ["x"] * MAX_INLINE_ITEMS
    assert inline_safe(loop, {"event": {"properties": {"items": items}}})
    assert not inline_safe(loop, {"event": {"properties": {"items": [*items, "x"]}}})
    assert inline_safe(loop, {"event": {"properties": None}})
    assert not inline_safe(loop, {"event": {"properties": "a string has no items"}})


def test_a_template_error_keeps_its_limit_through_a_process_boundary() -> None:
    error = pickle.loads(pickle.dumps(TemplateError("body: too long", "output")))
    assert (str(error), error.limit) == ("body: too long", "output")


def test_a_template_nested_too_deeply_for_the_compiler_is_a_syntax_error() -> None:
    message = check("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}")
    assert message is not None
    assert "nested too deeply" in message or "line 1" in message


async def test_the_renderer_renders_inline_or_in_a_worker_and_stops_a_runaway() -> None:
    registry = CollectorRegistry()
    renderer = Renderer(workers=1, time_limit_s=0.5, memory_limit_mib=64, registry=registry)
    try:
        simple = await renderer.render(
            TemplateContent(None, "Hi {{ profile.first_name }}"), CONTEXT
        )
        looped = await renderer.render(
            TemplateContent(
                None, "{% for i in event.properties['items'] %}{{ i.qty }}{% endfor %}"
            ),
            CONTEXT,
        )
        assert (simple.body, looped.body) == ("Hi Ada", "13")
        with pytest.raises(TemplateError, match=r"longer than 0\.5 s \(the time limit\)"):
            await renderer.render(
                TemplateContent(None, "{% for i in range(9999) %}{% for j in range(9999) %}"
                                "{% endfor %}{% endfor %}"),
                CONTEXT,
            )  # fmt: skip
        with pytest.raises(TemplateError, match="memory limit of 64 MiB"):
            await renderer.render(
                TemplateContent(None, "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
                                "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}"),
                CONTEXT,
            )  # fmt: skip
        # The killed worker was replaced.
        again = await renderer.render(
            TemplateContent(None, "{% for i in range(2) %}{{ i }}{% endfor %}"), CONTEXT
        )
        assert again.body == "01"
        assert await renderer.offload(len, "four") == 4
    finally:
        await renderer.aclose()
    # The loop over the two items of the cart rendered inline, the rest in the worker.
    assert registry.get_sample_value("waypost_template_renders_total", {"mode": "inline"}) == 2
    assert registry.get_sample_value("waypost_template_renders_total", {"mode": "pool"}) == 3
    for limit in ("time", "memory"):
        assert (
            registry.get_sample_value("waypost_template_limit_exceeded_total", {"limit": limit})
            == 1
        )


def test_a_template_of_many_tags_is_compiled_and_rendered_in_a_worker() -> None:
    many = TemplateContent(None, "{{ profile.first_name }}" * (MAX_INLINE_TAGS + 1))
    few = TemplateContent(None, "{{ profile.first_name }}" * MAX_INLINE_TAGS)
    assert (compiles_quickly(many), inline_safe(many, CONTEXT)) == (False, False)
    assert (compiles_quickly(few), inline_safe(few, CONTEXT)) == (True, True)
    # A large static page compiles quickly whatever its size.
    assert compiles_quickly(TemplateContent(None, "<p>Hello</p>\n" * 40_000))


async def test_the_renderer_checks_a_large_template_in_a_worker() -> None:
    renderer = Renderer(workers=1, time_limit_s=5)
    try:
        big = "{{ profile.first_name }}" * 1000
        assert await renderer.check(TemplateContent(None, big)) == {}
        broken = await renderer.check(TemplateContent(None, big + "{{ oops"))
        assert set(broken) == {"body"}
        assert broken["body"].startswith("line 1:")
    finally:
        await renderer.aclose()
