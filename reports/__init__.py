"""HTML rendering of results and histories. Reports compute no verdicts.

- `render_run(run_dir) -> Path`: write `run_dir/report.html` (self-contained,
  offline) from the run's results.json, history.jsonl, test.json and
  schedule.json, and return its path. The runner calls it after checking.
- `render_run_html(run_dir) -> str`: the same page as a string.
- `find_runs`, `summarize_run`, `render_index`: the store's run list, used by
  `logquake serve`.
- `reports.campaign`: a campaign's junit.xml, index.html, trends and scorecard pages.

Boundaries: imports only the checkers of the repo, for the history model and the
delivery table (`checkers.queue.delivery`), never the harness, nemeses or
workloads (import-linter contract in pyproject.toml). Thread-safety: every function is pure over the
files it reads.
"""

from reports.index import find_runs, render_index, summarize_run
from reports.page import render_run, render_run_html

__all__ = ["find_runs", "render_index", "render_run", "render_run_html", "summarize_run"]
