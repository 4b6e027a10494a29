"""HTML rendering of results and campaigns. Reports compute no verdicts."""
