"""``switchboard eval``: cases run through the real turn pipeline, judged, and reported."""
