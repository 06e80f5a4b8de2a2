"""A clean first open: `lguest-book open` copies and trusts the book; a chapter opened in
JupyterLab (Chromium) shows its widgets from the saved state, nothing is marked modified, and
saving writes back the same bytes, notebook and .py twin."""

from __future__ import annotations

import pytest

from lguest_book import _e2e, cli

CHAPTER = "02-demand-page.ipynb"


def test_a_chapter_opens_trusted_and_unmodified(tmp_path, monkeypatch):
    if _e2e.chromium_path() is None:
        pytest.skip("Debian's chromium is not installed (scripts/bootstrap test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))  # the notary's secret and database
    copy = tmp_path / "my-book"
    assert cli.main(["open", str(copy), "--dry-run"]) == 0
    notebook, twin = copy / CHAPTER, (copy / CHAPTER).with_suffix(".py")
    stored_nb, stored_twin = notebook.read_bytes(), twin.read_bytes()
    log = tmp_path / "server.log"
    with _e2e.jupyterlab(copy, extra_args=tuple(cli.lab_options()), log_copy=log) as (base, token), \
            sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_e2e.chromium_path(), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(90_000)
            page.goto(f"{base}/lab/tree/{CHAPTER}?token={token}")
            current = "window.jupyterapp.shell.currentWidget"
            page.wait_for_function(
                f"() => window.jupyterapp && {current} && {current}.sessionContext && {current}.sessionContext.session"
                f" && {current}.sessionContext.session.kernel && {current}.sessionContext.session.kernel.status === 'idle'")
            # the stored widget is drawn from the saved state, before anything runs
            page.wait_for_selector(".jp-OutputArea .jupyter-widgets button")
            trusted = page.evaluate(
                f"() => {{ const cells = {current}.content.model.cells; const out = [];"
                " for (let i = 0; i < cells.length; i++) { const c = cells.get(i);"
                " if (c.type === 'code') out.push(c.trusted); } return out; }")
            assert trusted and all(trusted), trusted
            page.wait_for_timeout(2000)  # kernel info and the widget manager have had their say
            assert page.evaluate(f"() => {current}.context.model.dirty") is False
            page.evaluate(f"() => window.jupyterapp.commands.execute('docmanager:save')")
            page.wait_for_function(f"() => !{current}.context.model.dirty && !{current}.context.isDisposed")
            page.wait_for_timeout(1500)
        finally:
            browser.close()
    assert twin.read_bytes() == stored_twin, "saving rewrote the .py twin"
    assert notebook.read_bytes() == stored_nb, "saving rewrote the notebook (metadata JupyterLab changes?)"
    assert "without encryption" not in log.read_text()
