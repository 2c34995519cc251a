"""Tables of the ``scheduler`` schema."""

from shared.db import make_base

Base = make_base("scheduler")
