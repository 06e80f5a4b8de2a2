"""The hostile-guest lab (chapter 11): the attacker can do what a Guest can, the promises are
checked after every step, the checkers see what happened, and grading cannot be fooled."""

from __future__ import annotations

import pytest

from lguest_book import hypercalls as hc
from lguest_book import lab
from lguest_book.x86 import _PAGE_ACCESSED, _PAGE_PRESENT


def test_an_honest_guest_breaks_no_promise_in_either_layout():
    for pae in (False, True):
        a = lab.Attacker(pae=pae)
        p = a.new_process()
        a.switch_to(p)
        for i in range(4):
            a.map(0x08048000 + i * 4096, a.alloc_page())
            a.touch(0x08048000 + i * 4096, write=bool(i % 2), user=True)
        a.flush()
        a.touch(0xC0001000)
        assert a.teardown() == [] and a.broken == []


def test_steps_are_data_and_replay_is_exact():
    a = lab.Attacker()
    a.switch_to(a.new_process())
    a.map(0x08048000, a.alloc_page())
    a.touch(0x08048000, user=True)
    b = lab.replay(a.steps, teardown=False)
    assert b.steps == a.steps
    assert lab._host_state(a.guest) == lab._host_state(b.guest)


def test_the_attacker_cannot_reach_the_host():
    a = lab.Attacker()
    limit = a.limits()["pfn_limit"] * 4096
    assert a.poke(limit, 0x1234) is None  # outside its memory: nothing happens
    with pytest.raises(ValueError, match="not an action of the Guest"):
        a.do("store_host", 1)
    with pytest.raises(ValueError, match="not a register value"):
        a.hypercall(-1)
    with pytest.raises(ValueError, match="unknown Host setting"):
        lab.Attacker(ram_pages=5)
    assert not hasattr(a, "host")


@pytest.mark.parametrize("challenge", list(lab.KNOWN_ATTACKS))
def test_each_known_attack_achieves_its_challenge(challenge):
    result = lab.attempt(challenge, lab.KNOWN_ATTACKS[challenge])
    assert result.succeeded, result.why
    assert result.error is None


@pytest.mark.parametrize("challenge", [c for c in lab.CHALLENGES if c != "foreign-map"])
def test_an_honest_run_achieves_no_challenge(challenge):
    def honest(a):
        a.switch_to(a.new_process())
        a.map(0x08048000, a.alloc_page(), _PAGE_PRESENT | 0x2 | 0x4 | _PAGE_ACCESSED | 0x40)
        a.touch(0x08048000, write=True, user=True)

    assert not lab.attempt(challenge, honest).succeeded


def test_promise_report_names_the_step_and_the_evidence_and_shrinks():
    result = lab.attempt("crash-host", lab.KNOWN_ATTACKS["crash-host"])
    oops = next(b for b in result.broken if b.promise == "no-oops")
    assert oops.action.startswith("switch_to") and "NULL pointer" in oops.evidence[0]
    padded = [lab.Step("touch", (0xC0000000, False, False)), lab.Step("hypercall", (hc.LHCALL_FLUSH_TLB, 0, 0, 0, 0))] + result.steps
    assert lab.first_broken(padded, "no-oops") is not None
    short = lab.shrink(padded, "no-oops")
    assert len(short) <= len(result.steps) and lab.first_broken(short, "no-oops") is not None
    assert lab.Step("touch", (0xC0000000, False, False)) not in short


def test_picture_shows_the_count_that_went_wrong():
    host = lab._host(lab.CHALLENGES["foreign-put"])
    result = lab.attempt("foreign-put", lab.KNOWN_ATTACKS["foreign-put"])
    b = next(b for b in result.broken if b.action != "teardown")
    b.replay = result.steps[: b.step + 1]
    fig = lab.picture(b, **host)
    assert any(count < 0 for count in fig.after_counts.values())


def test_fuzz_with_runs_is_deterministic_and_finds_a_known_flaw():
    one = lab.fuzz(runs=25, seed=3)
    two = lab.fuzz(runs=25, seed=3)
    assert str(one) == str(two)
    assert "own-memory" not in one.found
    with pytest.raises(ValueError, match="seconds"):
        lab.fuzz(seconds=0)


def test_reattack_shows_a_fix_restoring_the_promise():
    from lguest_book import page_tables as pt
    from lguest_book.lguest import kill_guest

    def guest_set_pgd(lg, gpgdir, idx):
        if idx >= lg.x86.PTRS_PER_PGD:
            kill_guest(lg.cpus[0], "fixed")
            return
        slot = pt.find_pgdir(lg, gpgdir)
        if slot < len(lg.pgdirs):
            pt.release_pgd(lg.host, lg.host.entry_ptr(lg.pgdirs[slot].pgdir, idx))
            if not pt.allocate_switcher_mapping(lg.cpus[0]):
                kill_guest(lg.cpus[0], "Cannot populate switcher mapping")
            lg.pgdirs[slot].last_host_cpu = -1

    r = lab.reattack({"guest_set_pgd": guest_set_pgd}, runs=10, compare_runs=6)
    rows = {row["challenge"]: row for row in r.rows}
    assert rows["foreign-put"] == {"challenge": "foreign-put", "before": True, "after": False}
    assert all(row["before"] == row["after"] for c, row in rows.items() if c != "foreign-put")
    assert r.differences and all(s.args[0] == hc.LHCALL_SET_PGD for _, _, _, s in r.differences)


CHEATS = {
    "patches the checker": "from lguest_book import lab\nlab.CHALLENGES['crash-host'].__dict__\n"
                           "def attack(a):\n    import lguest_book.lab as L\n    L._broke = lambda *x: (lambda a: (True, 'x'))\n"
                           "    L.attempt = lambda *x, **k: None\n",
    "fakes an oops": "def attack(a):\n    a.guest.host.oopses.append('BUG: fake')\n",
    "prints a fake verdict": "def attack(a):\n    print('@@STEPS@@{\"steps\": [], \"error\": null}')\n",
    "hangs": "def attack(a):\n    while True:\n        pass\n",
    "kills the process": "import os\ndef attack(a):\n    os._exit(0)\n",
}


@pytest.fixture(scope="module")
def grader():
    from lguest_book import grading

    g = grading.Grader(timeout=6)
    yield g
    g.close()


@pytest.mark.parametrize("cheat", list(CHEATS))
def test_grading_runs_the_attack_elsewhere_and_judges_only_its_steps(cheat, grader):
    verdict = grader.grade_attack("crash-host", CHEATS[cheat])
    assert not verdict.ok, verdict.text


def test_the_cli_grades_in_the_sandbox_too(tmp_path, capsys):
    from lguest_book.cli import main

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.py"
    evil.write_text(f"import os\ndef attack(a):\n    os.system('touch {marker}')\n")
    assert main(["lab", "grade", "crash-host", str(evil)]) == 1
    out = capsys.readouterr().out
    assert not marker.exists() and "refuses os.system" in out, out


def test_grading_an_honest_attack():
    source = (
        "def attack(a):\n"
        "    first = a.new_process(); second = a.new_process()\n"
        "    a.switch_to(first); a.switch_to(second)\n"
        "    a.set_pgd(a.gpgdir(first), a.guest.x86.pgd_index(a.guest.host.switcher_addr))\n"
        "    a.switch_to(first)\n"
    )
    from lguest_book import grading

    verdict = grading.Grader(timeout=30).grade_attack("crash-host", source)
    assert verdict.ok and "steps replayed on a pristine Host" in verdict.text, verdict.text


def test_cli_lab(tmp_path, capsys):
    from lguest_book.cli import main

    assert main(["lab", "challenges"]) == 0
    assert "amplify" in capsys.readouterr().out
    assert main(["lab", "hint", "amplify", "--level", "2"]) == 0
    assert "hint 2:" in capsys.readouterr().out
    assert main(["lab", "hint", "nope"]) == 2
    assert "no challenge named 'nope'" in capsys.readouterr().err
    answer = tmp_path / "attack.py"
    answer.write_text("def attack(a):\n    a.touch(0x08048000)\n")
    assert main(["lab", "grade", "crash-host", str(answer)]) == 1
    assert "✗ crash-host: 1 step replayed on a pristine Host; no step broke" in capsys.readouterr().out
    assert main(["lab", "grade", "crash-host", str(tmp_path / "missing.py")]) == 2
    assert main(["lab", "fuzz", "--runs", "5"]) == 0
    assert "random hostile Guests" in capsys.readouterr().out


# --- the graded challenge, through real nbgrader ------------------------------------------------
LAB_HONEST = {
    "honest-loop": """from lguest_book.x86 import _PAGE_ACCESSED, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER


def attack(a):
    table, data = a.alloc_page(), a.alloc_page()
    a.poke(table << 12, (data << 12) | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED)
    a.switch_to(a.new_process())
    for i in range(70):
        a.poke(a.gpgdir() + 4 * i, (table << 12) | 0x067)
        a.touch(i << 22, user=True)
""",
}
LAB_CHEATS = {
    "delegates": "from lguest_book import lab\n\ndef attack(a):\n    lab.KNOWN_ATTACKS['amplify'](a)\n",
    "patches-the-check": "from lguest_book import lab\nlab.check_attack = lambda *a, **k: None\n\ndef attack(a):\n    pass\n",
    "fakes-the-host": "def attack(a):\n    for f in range(0x8000, 0x8100):\n        a.guest.host.refcount[f] = 1\n",
    "hangs": "def attack(a):\n    while True:\n        pass\n",
}


@pytest.fixture(scope="module")
def lab_course(tmp_path_factory):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbgrader")
    from lguest_book import classroom

    chapter = next(p for p in classroom.graded_chapters() if p.name.startswith("11-"))
    course = tmp_path_factory.mktemp("lab") / "course"
    assert classroom.make_course(course, notebooks=[chapter], time_limit=4.0, timeout=8.0) == ["ch11"]
    classroom.generate(course, "ch11")
    released = nbformat.read(course / "release" / "ch11" / chapter.name, 4)
    answer = next(i for i, c in enumerate(released.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    for student, source in {**LAB_HONEST, **LAB_CHEATS, "blank": None}.items():
        nb = nbformat.from_dict(nbformat.reads(nbformat.writes(released), 4))
        if source is not None:
            nb.cells[answer].source = source
        folder = course / "submitted" / student / "ch11"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / chapter.name)
    classroom.autograde(course, "ch11")
    return course


@pytest.mark.parametrize("student", list(LAB_HONEST))
def test_an_honest_attack_scores_full_marks_under_nbgrader(lab_course, student):
    from lguest_book import classroom

    assert classroom.scores(lab_course, "ch11", student)["total"] == (3.0, 3.0)


@pytest.mark.parametrize("student", [*LAB_CHEATS, "blank"])
def test_a_cheating_or_blank_attack_scores_zero_under_nbgrader(lab_course, student):
    from lguest_book import classroom

    assert classroom.scores(lab_course, "ch11", student)["total"] == (0.0, 3.0)


# --- what the chapter and the CLI say (a student review of chapter 11) ---------------------------
def _foreign_put_break():
    host = lab.host_settings("foreign-put")
    result = lab.attempt("foreign-put", lab.KNOWN_ATTACKS["foreign-put"])
    b = next(b for b in result.broken if b.promise == "no-leak" and b.action != "teardown")
    return host, result, b


def _title_and_legend_fit(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    width = fig.bbox.width
    ax = fig.axes[0]
    title = ax.title.get_window_extent(renderer)
    assert 0 <= title.x0 and title.x1 <= width, (title, width)
    return [t.get_text() for t in ax.get_legend().get_texts()], [p.get_facecolor() for p in ax.get_legend().get_patches()]


def test_picture_of_the_whole_attack_shows_the_switcher_frame_below_zero():
    from matplotlib.colors import to_rgba

    from lguest_book.plots import VERMILION

    host, result, b = _foreign_put_break()
    switcher = result.steps[1].args[1] >> 12
    fig = lab.picture(b, result.steps, **host)
    assert {f: c for f, c in fig.after_counts.items() if c < 0} == {switcher: -2}
    assert fig.owners[switcher] == ("switcher", 1)
    texts, colours = _title_and_legend_fit(fig)
    assert "after it: zero or below" in texts and to_rgba(VERMILION) in [tuple(c) for c in colours]


def test_picture_of_the_minimal_replay_shows_the_host_frame_it_reaches():
    host, result, b = _foreign_put_break()
    b.replay = lab.shrink(result.steps, "no-leak", **host)
    assert [str(s) for s in b.replay] == ["map(0xffc00000, 0x00205, 0x63)", str(result.steps[-1])]
    fig = lab.picture(b, **host)
    assert {f: c for f, c in fig.after_counts.items() if c < 0} == {0x205: -1}
    assert fig.owners[0x205] == ("host", None)
    _title_and_legend_fit(fig)
    with pytest.raises(ValueError, match="give the steps"):
        lab.picture(lab.Broken("no-leak", 0, "x", []))


def test_put_page_evidence_states_the_count_before_the_call():
    _, _, b = _foreign_put_break()
    assert b.evidence[:2] == ["put_page on frame 0x08001 whose count was already 0",
                              "put_page on frame 0x08001 whose count was already -1"]


def test_host_settings_is_public_and_refuses_an_unknown_challenge():
    assert lab.host_settings("foreign-put") == {"switcher_addr": 0xFFFFD000, "prandom": [0] * 64}
    assert lab.host_settings("crash-host") == {}
    with pytest.raises(ValueError, match="no challenge named"):
        lab.host_settings("nope")


def test_amplify_feedback_says_how_much_user_space_was_mapped():
    def many_pages(a):
        for i in range(70):
            v = i << 22
            a.map(v, a.alloc_page())
            a.touch(v, user=True)

    why = lab.attempt("amplify", many_pages).why
    assert why.startswith("your user space mapped up to 70 pages; only the moments when it mapped at most one count, "
                          "and then the Host held at most "), why
    assert why.endswith("(64 is the goal)")

    def one_page(a):
        a.switch_to(a.new_process())
        a.map(0x08048000, a.alloc_page())
        a.touch(0x08048000, user=True)

    why = lab.attempt("amplify", one_page).why
    assert "while your user space mapped at most one page (64 is the goal)" in why and "up to" not in why


def test_steps_print_by_their_layout():
    for pae, digits, entry in ((False, 5, "0x00000005"), (True, 8, "0x0000000000000005")):
        a = lab.Attacker(pae=pae)
        a.switch_to(a.new_process())
        page = a.alloc_page()
        a.map(0x08048000, page, 0x27)
        frame = f"0x{page:0{digits}x}"
        a.poke(0x1000, 5)
        text = "; ".join(str(s) for s in a.steps)
        assert f"map(0x08048000, {frame}, 0x27)" in text, text
        assert f"poke({'0x0000000000001000' if pae else '0x00001000'}, {entry})" in text, text
        assert lab.Step("poke", (0x1000, 5)) == a.steps[-1]  # the layout is not part of a step's identity
    assert all(s.pae for s in lab.random_steps(__import__("random").Random(1), 5, pae=True))


def test_a_one_step_replay_says_step():
    b = lab.Broken("no-leak", 0, "teardown", ["x"], [lab.Step("touch", (0, False, False))])
    assert "minimal replay (1 step): touch(" in str(b)
    b.replay = b.replay * 2
    assert "minimal replay (2 steps): " in str(b)


def test_cli_lab_names_the_file_and_describes_its_actions(tmp_path, capsys):
    from lguest_book.cli import main

    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    assert main(["lab", "grade", "crash-host", str(empty)]) == 1
    out = capsys.readouterr().out
    assert f"✗ crash-host: {empty} does not define attack(a)" in out and "answer cell" not in out, out
    with pytest.raises(SystemExit):
        main(["lab", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for words in ("challenges list the challenges", "hint CHALLENGE the first rung", "grade CHALLENGE FILE grade the attack(a)",
                  "fuzz random hostile Guests"):
        assert words in help_text, help_text


def _chapter11():
    from pathlib import Path

    return (Path(__file__).resolve().parents[1] / "book" / "11-lab.py").read_text()


def test_chapter_11_uses_no_private_lab_name():
    import re

    assert not re.search(r"\blab\._\w", _chapter11())


def test_chapter_11_worked_answer_is_the_known_attack_and_the_exercise_starts_empty():
    import re

    text = _chapter11()
    turn = text[text.index("### Your turn: crash the Host"):text.index("### Graded challenge: amplify")]
    stub = turn[turn.index("# %%\ndef attack(a):"):]
    stub = stub[:stub.index("\n# %%", 1)]
    assert "raise NotImplementedError" in stub and "set_pgd" not in stub
    code = re.search(r"# ```python\n(.*?)# ```", turn, re.S).group(1)
    namespace = {}
    exec("\n".join(line[2:] for line in code.splitlines()), namespace)
    worked = lab.attempt("crash-host", namespace["attack"])
    known = lab.attempt("crash-host", lab.KNOWN_ATTACKS["crash-host"])
    assert worked.succeeded and worked.steps == known.steps


def test_student_copy_of_chapter_11_holds_no_crash_host_answer(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from pathlib import Path

    from lguest_book import classroom

    src = Path(__file__).resolve().parents[1] / "book" / "11-lab.ipynb"
    nb = nbformat.read(classroom.student_copy(src, tmp_path), 4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "a.set_pgd(a.gpgdir(first)" not in code
    assert "BEGIN SOLUTION" not in code and "a.poke(a.gpgdir() + i * 4" not in code
