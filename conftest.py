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
def referee_log(request):
    """Tests of the referees call this with a line saying how much they compared.  The line
    travels in the test's report (``user_properties``), so it reaches the summary from an
    xdist worker too."""
    return lambda line: request.node.user_properties.append(("referee", line))


def pytest_runtest_logreport(report):
    if report.when == "call":
        _REFEREE_LINES.extend(value for key, value in report.user_properties if key == "referee")


# --- both cores: long modules first ------------------------------------------------------------
# With --dist loadscope (see pyproject.toml) each module or notebook goes whole to one worker,
# in the order collected; a long module started last would run alone at the end.  Modules
# marked ``early`` (or named here) come first, longest first; the rest keep their order.
EARLY_MODULES = ("tests/test_classroom.py", "tests/test_e2e_browser.py", "tests/test_book_tooling.py",
                 "tests/test_referee_c.py")


def _early_rank(item) -> int:
    path = item.nodeid.split("::", 1)[0]
    if path in EARLY_MODULES:
        return EARLY_MODULES.index(path)
    if item.get_closest_marker("early") is not None:
        return len(EARLY_MODULES)
    return len(EARLY_MODULES) + 1


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: the CPUs this process may run on (not psutil's count of the whole machine's
    cores, which a container's CPU set can be far below), at most 4; none (one process, no
    start-up of workers) when the command names a single test file or notebook, which
    --dist loadscope would give to one worker anyway.  ``-n N`` is obeyed as given."""
    import os
    from pathlib import Path

    if config.args_source == pytest.Config.ArgsSource.ARGS:
        files = {arg.split("::", 1)[0] for arg in config.args}
        if len(files) == 1 and Path(next(iter(files))).is_file():
            return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=_early_rank)  # stable: within a rank, collection order


def pytest_terminal_summary(terminalreporter):
    if _REFEREE_LINES:
        terminalreporter.section("referees: what was compared")
        for line in _REFEREE_LINES:
            terminalreporter.write_line(line)
