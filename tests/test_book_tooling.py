"""The book's tooling, on a throwaway book: pairing, execution with stored outputs, checks."""

import shutil
import textwrap

import nbformat
import pytest

from lguest_book import book

CHAPTER = textwrap.dedent(
    '''\
    # %% [markdown]
    # # A tiny chapter
    # ## What you will learn
    # That a fault is fixed.

    # %%
    from lguest_book import Guest
    g = Guest()
    print(g.touch(0xC0000000).outcome)

    # %%
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1]);

    # %%
    import ipywidgets
    ipywidgets.IntSlider(value=3)

    # %% [markdown]
    # ## Exercises
    # 1. Touch another address.
    '''
)


@pytest.fixture
def tiny_book(tmp_path):
    shutil.copy(book.BOOK / "jupytext.toml", tmp_path / "jupytext.toml")
    (tmp_path / "01-tiny.py").write_text(CHAPTER)
    return tmp_path


def test_sync_execute_check_round_trip(tiny_book):
    notebooks = book.sync(tiny_book)
    assert [n.name for n in notebooks] == ["01-tiny.ipynb"]
    nb_path = notebooks[0]
    assert book.pair_in_sync(nb_path)
    # before execution the check complains about missing outputs
    problems = book.check_notebook(nb_path).problems
    assert any("not every code cell has been executed" in p for p in problems)
    seconds = book.execute(nb_path)
    assert seconds < 60
    nb = nbformat.read(nb_path, 4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("ok" in o.get("text", "") for o in outputs)
    assert "widgets" in nb.metadata  # widget state stored for readers
    assert book.check_notebook(nb_path).problems == []
    assert book.pair_in_sync(nb_path)
    # executing again changes nothing, byte for byte: ids are derived, not random
    first = nb_path.read_bytes()
    book.execute(nb_path)
    assert nb_path.read_bytes() == first
    assert "IPY_MODEL_" in first.decode() and '"execution":' not in first.decode()


def test_stabilise_renames_widget_ids_by_reading_order_and_merges_streams():
    def executed(ids):
        slider, layout = ids
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("print('a'); print('b'); slider")
        cell.outputs = [
            nbformat.v4.new_output("stream", name="stdout", text="a\n"),
            nbformat.v4.new_output("stream", name="stdout", text="b\n"),
            nbformat.v4.new_output("display_data", data={book.WIDGET_VIEW: {"model_id": slider, "version_major": 2, "version_minor": 0}}),
        ]
        nb.cells = [cell]
        state = {layout: {"model_name": "LayoutModel", "state": {}},
                 slider: {"model_name": "IntSliderModel", "state": {"layout": f"IPY_MODEL_{layout}"}}}
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state, "version_major": 2, "version_minor": 0}}
        return nb

    one = book.stabilise(executed(("a" * 32, "b" * 32)), "01-x")
    two = book.stabilise(executed(("c" * 32, "d" * 32)), "01-x")
    assert nbformat.writes(one) == nbformat.writes(two)
    assert [o.get("text") for o in one.cells[0].outputs][:1] == ["a\nb\n"]
    models = one.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    shown = one.cells[0].outputs[1]["data"][book.WIDGET_VIEW]["model_id"]
    assert models[shown]["state"]["layout"].removeprefix("IPY_MODEL_") in models


def test_check_finds_drift_and_missing_parts(tiny_book):
    nb_path = book.sync(tiny_book)[0]
    book.execute(nb_path)
    twin = book.text_twin(nb_path)
    twin.write_text(twin.read_text().replace("Touch another address.", "Something else."))
    twin.write_text(twin.read_text().replace("## Exercises", "## Summary"))
    problems = book.check_notebook(nb_path).problems
    assert any("differ" in p for p in problems)
    nb = nbformat.read(nb_path, 4)
    nb.cells = [c for c in nb.cells if "IntSlider" not in c.source]
    nbformat.write(nb, nb_path)
    problems = book.check_notebook(nb_path).problems
    assert any("no widget" in p for p in problems)
