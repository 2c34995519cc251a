"""Tables of the ``activator`` schema."""

from shared.db import make_base

Base = make_base("activator")
