"""What running the suite on several cores (pytest-xdist, see pyproject.toml and conftest.py)
relies on: the C referee built once when several workers ask for it at the same moment, and
the worker count for ``-n auto``."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from lguest_book.verify import c_referee as cr
from lguest_book.verify import extract


def test_two_workers_asking_at_once_build_the_referee_once(tmp_path, monkeypatch):
    if not cr.gcc_m32_available():
        pytest.skip("gcc -m32 is not available (apt-get install gcc-multilib)")
    try:
        extract.find_source()
    except FileNotFoundError:
        pytest.skip("page_tables.c not found (shared/seeds beside the repository, or LGUEST_BOOK_C_SOURCE)")
    from lguest_book import locate

    def own_build_dir(*parts):  # a build folder of its own, empty
        folder = tmp_path.joinpath("build", *parts)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    monkeypatch.setattr(extract, "ROOT", tmp_path)
    monkeypatch.setattr(locate, "build_dir", own_build_dir)
    compiles = []
    real_run = subprocess.run

    def slow_gcc(cmd, *args, **kwargs):  # widen the window in which a second build could start
        if cmd and cmd[0] == "gcc":
            compiles.append(cmd)
            time.sleep(0.5)
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(cr.subprocess, "run", slow_gcc)
    results: list = []
    workers = [threading.Thread(target=lambda: results.append(cr.build(False))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert len(results) == 2 and results[0] == results[1] and results[0].exists()
    assert len(compiles) == 1  # the second found the first one's executable, whole
    machine = cr.CMachine(results[0])
    try:
        assert machine.state() is not None
    finally:
        machine.close()


def test_auto_workers_follow_the_cpus_and_a_single_file_runs_in_one_process():
    import os

    import conftest

    class Config:
        def __init__(self, args, source):
            self.args, self.args_source = args, source

    whole = Config(["tests", "book"], pytest.Config.ArgsSource.TESTPATHS)
    assert conftest.pytest_xdist_auto_num_workers(whole) == max(1, min(4, len(os.sched_getaffinity(0))))
    one = Config(["tests/test_practice.py::test_evict_answer_is_computed_not_stored"], pytest.Config.ArgsSource.ARGS)
    assert conftest.pytest_xdist_auto_num_workers(one) == 0
    two = Config(["tests/test_practice.py", "tests/test_flaws.py"], pytest.Config.ArgsSource.ARGS)
    assert conftest.pytest_xdist_auto_num_workers(two) >= 1
