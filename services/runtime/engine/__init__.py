"""The journey engine: pure and deterministic. Given a profile's place in its journeys, the
live journeys and one input (an event, or a timer that fell due), it returns the new places
and the effects (timeline entries, timers to set or cancel, activations to request).

No I/O, no clock reads (``now`` is given), no randomness it was not given: the runtime
service loads state, calls it and persists the result; the simulator calls it unchanged.
"""
