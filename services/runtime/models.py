"""Tables of the ``runtime`` schema."""

from shared.db import make_base

Base = make_base("runtime")
