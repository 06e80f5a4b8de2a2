"""Only the book's notebooks are tests; a notebook anywhere else (a test's data) is not."""

collect_ignore_glob = ["tests/**/*.ipynb", "build/**", ".venv/**", "venv/**"]

# Hypothesis profiles: the default keeps the suite quick; `pytest --hypothesis-profile=soak`
# runs the property tests far longer (e.g. before a release).
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True)  # same examples every run
settings.register_profile("soak", max_examples=5000, deadline=None)
settings.load_profile("ci")


# --- the referees' counts, shown at the end of every run -----------------------------------
import pytest  # noqa: E402

_REFEREE_LINES: list[str] = []


@pytest.fixture
def referee_log():
    """Tests of the referees call this with a line saying how much they compared."""
    return _REFEREE_LINES.append


def pytest_terminal_summary(terminalreporter):
    if _REFEREE_LINES:
        terminalreporter.section("referees: what was compared")
        for line in _REFEREE_LINES:
            terminalreporter.write_line(line)
