"""The grader reads answers on several threads at once (SecureGrade grades a notebook's
submissions in parallel).  Reading must give the same verdicts there as on one thread."""
import concurrent.futures
import inspect
import sys

from lguest_book import grading, page_tables

COPY = inspect.getsource(inspect.unwrap(page_tables.page_writable))
CELL = 'lab.check_attack("amplify", attack)\ncheck("ch3-page-writable", page_writable)\n'


class _Finaliser:
    """Cyclic garbage whose finaliser runs Python code: a collection in the middle of a parse
    then lets another thread run, as nbgrader's own objects (Popen, sockets) do."""

    def __init__(self):
        self.me = self

    def __del__(self):
        sum(range(200))


def _read(_):
    out = []
    for _ in range(15):
        _Finaliser()
        out.append((grading.copy_flags(COPY, "ch3-page-writable", "page_writable"),
                    [c.exercise for c in grading.checks_in(CELL)]))
    return out


def test_reading_answers_on_many_threads_gives_the_one_thread_verdicts(monkeypatch):
    alone = _read(0)[0]
    assert alone[0] and alone[0][0].startswith("copy: page_writable")  # the copy is caught
    assert "lab:amplify" in alone[1]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = [r for rs in pool.map(_read, range(8)) for r in rs]
    finally:
        sys.setswitchinterval(old)
    assert results == [alone] * len(results)
