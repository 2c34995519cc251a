"""Runtime: consumes events and moves each profile through its journeys; owns profiles."""
