"""The ``waypost`` command: run the whole system on one machine, or one service alone."""
