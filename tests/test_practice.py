"""Practice generators: same seed, same problem; answers come from the model."""

import pytest

from lguest_book import practice
from lguest_book.cli import main


@pytest.mark.parametrize("kind", practice.KINDS)
def test_same_seed_same_problem_and_answer(kind):
    a, b = practice.problem(kind, 7), practice.problem(kind, 7)
    assert str(a) == str(b)
    assert a.answer() == b.answer()
    assert str(practice.problem(kind, 8)) != str(a)


@pytest.mark.parametrize("kind", practice.KINDS)
def test_check_accepts_the_models_answer_and_rejects_another(kind, capsys):
    prob = practice.problem(kind, 3)
    assert prob.check(prob.answer())
    assert "✓ right" in capsys.readouterr().out
    assert not prob.check("something else")
    assert "the model says" in capsys.readouterr().out


def test_walk_answer_matches_the_printed_entries():
    prob = practice.walk(1)
    addresses, paddr = prob.answer()
    for addr in addresses:
        assert f"entry at {addr}" in str(prob)  # the answer's addresses print as the question does
    if paddr is not None:
        assert prob.check((addresses, paddr))


def test_evict_answer_is_computed_not_stored():
    prob = practice.evict(2)
    first = prob.answer()
    assert first == prob.answer()  # recomputed from the same copy of the Guest
    assert all(0 <= s < 4 for s in first)


def test_cli_practice_and_bad_arguments(capsys):
    assert main(["practice", "fault", "--seed", "4", "--answer"]) == 0
    out = capsys.readouterr().out
    assert "[fault, seed 4]" in out and "answer:" in out
    with pytest.raises(ValueError, match="kind"):
        practice.problem("nonsense", 1)
    with pytest.raises(ValueError, match="seed"):
        practice.walk(-1)
