from __future__ import annotations

import re

from shared.tracking import CLICK_PATH, OPEN_PATH, Mark, instrument, sign, verify

MARK = Mark("ws", "ada", "j1", "email-1", "act_1")


def test_a_signed_mark_verifies_and_a_forged_one_does_not() -> None:
    token = sign(MARK, "s3cret")
    assert verify(token, "s3cret") == MARK
    assert verify(token, "other") is None
    _body, mac = token.split(".")
    tampered = sign(Mark("ws", "eve", "j1", "email-1", "act_1"), "x").split(".")[0]
    assert verify(f"{tampered}.{mac}", "s3cret") is None
    assert verify("garbage", "s3cret") is None
    assert verify("", "s3cret") is None


def test_links_are_rewritten_and_a_pixel_added() -> None:
    html = ('<html><body><a href="https://shop.example/cart?a=1&amp;b=2">Cart</a>'
            '<a href="mailto:x@y.z">mail</a></body></html>')  # fmt: skip
    out = instrument(html, MARK, "s3cret", "https://wp.example/")
    clicks = re.findall(r'href="https://wp\.example/t/c/([^"]+)"', out)
    assert len(clicks) == 1
    assert verify(clicks[0], "s3cret") == Mark(
        **{**MARK.__dict__, "url": "https://shop.example/cart?a=1&b=2"}
    )
    assert 'href="mailto:x@y.z"' in out
    (pixel,) = re.findall(r'<img src="https://wp\.example/t/o/([^"]+)"', out)
    assert verify(pixel, "s3cret") == MARK
    assert out.index("<img") < out.index("</body>")
    assert OPEN_PATH in out
    assert CLICK_PATH in out
