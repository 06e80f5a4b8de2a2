"""Only the book's notebooks are tests; a notebook anywhere else (a test's data) is not."""

collect_ignore_glob = ["tests/**/*.ipynb", "build/**", ".venv/**", "venv/**"]

# Hypothesis profiles: the default keeps the suite quick; `pytest --hypothesis-profile=soak`
# runs the property tests far longer (e.g. before a release).
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True)  # same examples every run
settings.register_profile("soak", max_examples=5000, deadline=None)
settings.load_profile("ci")


# --- the referees' counts, shown at the end of every run -----------------------------------
import json  # noqa: E402
from pathlib import Path  # noqa: E402

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
    module = _module(report.nodeid)
    _MODULE_SECONDS[module] = _MODULE_SECONDS.get(module, 0.0) + report.duration


# --- both cores: long modules first ------------------------------------------------------------
# With --dist loadscope (see pyproject.toml) each module or notebook goes whole to one worker,
# in the order collected; a long module started last would run alone at the end.  So modules
# are started longest first: by the time each took in the last run on this clone (kept in
# build/test-durations.json), else modules named here or marked ``early`` first.
EARLY_MODULES = ("tests/test_classroom.py", "tests/test_e2e_browser.py", "tests/test_book_tooling.py",
                 "tests/test_referee_c.py")
_DURATIONS = Path(__file__).resolve().parent / "build" / "test-durations.json"
_MODULE_SECONDS: dict[str, float] = {}


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _stored_durations() -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(_DURATIONS.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: `-p no:xdist` still works
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: the CPUs this process may run on (not psutil's count of the whole machine's
    cores, which a container's CPU set can be far below), at most 4; none (one process, no
    start-up of workers) when the command names a single test file or notebook, which
    --dist loadscope would give to one worker anyway.  ``-n N`` is obeyed as given."""
    import os

    if config.args_source == pytest.Config.ArgsSource.ARGS:
        files = {_module(arg) for arg in config.args}
        if len(files) == 1 and Path(next(iter(files))).is_file():
            return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def pytest_collection_modifyitems(session, config, items):
    stored = _stored_durations()

    def priority(item) -> float:
        path = _module(item.nodeid)
        if path in stored:
            return stored[path]
        if path in EARLY_MODULES:
            return 100_000.0 - EARLY_MODULES.index(path)
        return 50_000.0 if item.get_closest_marker("early") is not None else 0.0

    items.sort(key=lambda item: -priority(item))  # stable: a module's items keep their order


def pytest_sessionfinish(session):
    """Keep how long each module took (the main process sees every worker's reports)."""
    if hasattr(session.config, "workerinput") or not _MODULE_SECONDS:
        return
    config = session.config
    whole = config.args_source == pytest.Config.ArgsSource.TESTPATHS and not (
        config.option.keyword or config.option.markexpr or getattr(config.option, "lf", False)
        or config.getoption("ignore") or config.getoption("deselect"))
    stored = {} if whole else _stored_durations()  # a part of a module's tests says little: keep the longest
    for module, seconds in _MODULE_SECONDS.items():
        stored[module] = round(max(seconds, stored.get(module, 0.0)), 2)
    try:
        _DURATIONS.parent.mkdir(exist_ok=True)
        _DURATIONS.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # a read-only checkout: the next run orders by EARLY_MODULES


def pytest_terminal_summary(terminalreporter):
    if _REFEREE_LINES:
        terminalreporter.section("referees: what was compared")
        for line in _REFEREE_LINES:
            terminalreporter.write_line(line)


# --- shared fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=[False, True], ids=["nonpae", "pae"])
def machine(request):
    """The compiled page_tables.c (non-PAE, then PAE), one process per module and layout
    (tests/test_referee_c.py, tests/test_referee_taught.py)."""
    from lguest_book.verify import c_referee as cr

    c = cr.CMachine(cr.build(request.param))
    yield request.param, c
    c.close()
