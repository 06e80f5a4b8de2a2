"""The static HTML edition: built from the stored outputs, read in Chromium with every request
that leaves the site aborted.  The screenshot is kept in build/site/site.png."""

from __future__ import annotations

import functools
import http.server
import json
import re
import threading
from pathlib import Path

import nbformat
import pytest

from lguest_book import _e2e, htmlsite
from lguest_book.book import BOOK, chapters

ARTIFACT = Path(__file__).resolve().parent.parent / "build" / "site" / "site.png"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("myst_nb", reason="the site needs pip install -e .[site]")
    try:
        htmlsite.javascript()
    except htmlsite.SiteError as err:
        pytest.skip(str(err))
    out = tmp_path_factory.mktemp("site") / "html"
    index = htmlsite.build(BOOK, out)
    assert index.is_file()
    return out


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_the_site_has_every_chapter_and_vendors_its_javascript(site):
    for nb in chapters(BOOK):
        assert (site / f"{nb.stem}.html").is_file()
    assert (site / "search.html").is_file() and (site / "searchindex.js").is_file()
    for local in ("_static/vendor/require.js", "_static/vendor/html-manager/embed-amd.js",
                  "_static/vendor/mathjax/tex-chtml.js"):
        assert (site / local).is_file(), local
    for page in site.glob("*.html"):
        text = page.read_text()
        assert "cdn.jsdelivr.net" not in text and "cdnjs.cloudflare.com" not in text, page.name
        if page.stem[:2].isdigit():  # a chapter: its code is highlighted
            assert 'class="highlight-ipython3' in text and '<span class="k">' in text, page.name
        # every local link and resource is in the site (the download button's .ipynb included)
        for target in re.findall(r'(?:href|src)="([^"#?]+)', text):
            if not re.match(r"^(https?:|mailto:|data:|javascript:)", target):
                assert (page.parent / target).exists(), (page.name, target)


def test_a_widget_view_without_saved_state_stops_the_build(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    source = next(nb for nb in chapters(BOOK) if "widgets" in nbformat.read(nb, 4).metadata)
    nb = nbformat.read(source, 4)
    view = next(o["data"][htmlsite.WIDGET_VIEW]["model_id"] for c in nb.cells for o in c.get("outputs", [])
                if htmlsite.WIDGET_VIEW in o.get("data", {}))
    del nb.metadata["widgets"][htmlsite.WIDGET_STATE]["state"][view]
    nbformat.write(nb, book / source.name)
    problems = htmlsite.widget_problems(book / source.name)
    assert problems and view in json.dumps(problems) or "its model" in problems[0]
    with pytest.raises(htmlsite.SiteError, match="not in the saved widget state"):
        htmlsite.build(book, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_every_chapter_reads_offline_in_chromium(site, served):
    if _e2e.chromium_path() is None:
        pytest.skip("Debian's chromium is not installed (scripts/bootstrap test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    errors, failed, outside = [], [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_e2e.chromium_path(), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)

            def route(r):
                if r.request.url.startswith(served + "/"):
                    r.continue_()
                else:
                    outside.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
            # (the browser's own favicon fetch is cancelled when the test moves on to the next page)
            page.on("requestfailed", lambda r: r.url.endswith("/_static/favicon.svg") and "ABORTED" in (r.failure or "")
                    or failed.append(f"{r.url} ({r.failure})"))
            page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.url} ({r.status})"))
            names = [nb.stem for nb in chapters(BOOK)]
            for name in names:
                page.goto(f"{served}/{name}.html", wait_until="load")
                views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
                page.wait_for_function(
                    """() => [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')]
                        .every(s => { const w = s.parentElement.querySelector('.jupyter-widgets');
                                      return w && w.querySelector('.widget-button, .widget-html, .widget-label, button, input, select, img, svg'); })""")
                page.wait_for_function(
                    "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
                images = page.evaluate("() => document.images.length")
                assert views >= 1 and images >= 1, (name, views, images)
                if name == names[2]:
                    page.locator(".jupyter-widgets").first.scroll_into_view_if_needed()
                    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(ARTIFACT))
            # next / previous
            page.goto(f"{served}/{names[1]}.html", wait_until="networkidle")
            page.locator("a.right-next").first.click()
            page.wait_for_url(f"**/{names[2]}.html")
            page.locator("a.left-prev").first.click()
            page.wait_for_url(f"**/{names[1]}.html")
            # search
            page.goto(f"{served}/search.html?q=demand_page", wait_until="networkidle")
            page.wait_for_selector("ul.search li")
            found = page.locator("ul.search li a").all_inner_texts()
            assert any("fault" in t.lower() for t in found), found
            # math typeset by the site's own MathJax
            page.goto(f"{served}/index.html", wait_until="networkidle")
            page.wait_for_function("() => window.MathJax && window.MathJax.version && window.MathJax.Hub")
            typeset = page.evaluate("""async () => {
                const p = document.createElement('p'); p.textContent = '\\\\(x_{i+1} = 2^{12}\\\\)';
                document.querySelector('article, main, body').appendChild(p);
                await window.MathJax.typesetPromise([p]);
                return p.querySelectorAll('mjx-container').length; }""")
            assert typeset == 1
        finally:
            browser.close()
    assert not errors, errors
    assert not failed, failed
    assert not outside, outside
    assert ARTIFACT.stat().st_size > 20_000


def _browser(pw):
    return pw.chromium.launch(executable_path=_e2e.chromium_path(), headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])


def _needs_chromium():
    if _e2e.chromium_path() is None:
        pytest.skip("Debian's chromium is not installed (scripts/bootstrap test installs it)")
    return pytest.importorskip("playwright.sync_api")


def test_pages_with_widgets_say_they_are_pictures_and_the_lab_hints_are_readable(site):
    from lguest_book import lab

    for nb in chapters(BOOK):
        has_widgets = any(htmlsite.WIDGET_VIEW in o.get("data", {})
                          for c in nbformat.read(nb, 4).cells for o in c.get("outputs", []))
        text = (site / f"{nb.stem}.html").read_text()
        assert ("lguest-static-widgets" in text) == has_widgets, nb.name
        if has_widgets:
            assert "The widgets on this page are pictures" in text and "lguest-book open" in text, nb.name
    assert "lguest-static-widgets" not in (site / "index.html").read_text()
    # the download button offers the chapter as the book has it, without the site's notes
    for nb in chapters(BOOK):
        assert f'href="_sources/{nb.name}"' in (site / f"{nb.stem}.html").read_text(), nb.name
        assert (site / "_sources" / nb.name).read_bytes() == nb.read_bytes(), nb.name
    sync_api = _needs_chromium()
    lab_page = next(nb.stem for nb in chapters(BOOK) if nb.stem.startswith("11-"))
    amplify = lab.CHALLENGES["amplify"]
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto((site / f"{lab_page}.html").as_uri(), wait_until="load")
            # the note is near the top, above the first widget, and visible
            note = page.locator(".admonition.lguest-static-widgets")
            assert note.count() == 1 and note.is_visible()
            assert page.evaluate("""() => {
                const note = document.querySelector('.lguest-static-widgets');
                const widget = document.querySelector('script[type="application/vnd.jupyter.widget-view+json"]');
                return !!(note.compareDocumentPosition(widget) & Node.DOCUMENT_POSITION_FOLLOWING); }""")
            # every widget has its caption under it
            views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
            assert page.locator("p.lguest-static-widget").count() == views
            # the hint ladder's hints: folded, and each rung opens to its text
            hints = page.locator("details.lguest-hints")
            assert hints.count() == 1
            assert "the notebook reveals them one at a time" in hints.locator("> summary").inner_text()
            first = hints.locator("#hints-amplify details").first
            assert not first.locator("p").is_visible()
            hints.locator("> summary").click()
            page.locator("#hints-amplify > summary").click()
            assert amplify.goal in page.locator("#hints-amplify > summary").inner_text()
            assert not first.locator("p").is_visible()
            first.locator("summary").click()
            assert first.locator("p").inner_text() == amplify.hints[0]
            assert page.locator("details.lguest-hint-ladder").count() == len(lab.CHALLENGES)
            assert page.locator("#hints-amplify details").count() == len(amplify.hints)
        finally:
            browser.close()


def test_one_search_box_an_author_a_clean_console_and_excerpts_from_the_disk(site, served):
    sync_api = _needs_chromium()
    chapter = chapters(BOOK)[2].stem
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            for root in (served, site.as_uri()):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(30_000)
                problems = []
                page.on("console", lambda m: m.type == "error" and problems.append(f"{page.url}: {m.text}"))
                page.on("pageerror", lambda e: problems.append(f"{page.url}: {e}"))
                for name in ("index", chapter):
                    page.goto(f"{root}/{name}.html", wait_until="networkidle")
                    # one search box at 1400 px: the sidebar's, and no top bar holding another
                    boxes = page.evaluate("""() => [...document.querySelectorAll(
                            '.search-button-field, .search-button, form.bd-search input')]
                        .filter(e => { const r = e.getBoundingClientRect();
                                       return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden'; })
                        .map(e => e.closest('.bd-sidebar-primary') ? 'sidebar' : 'elsewhere')""")
                    assert boxes == ["sidebar"], (name, boxes)
                    assert page.evaluate("() => document.querySelector('#pst-header').getBoundingClientRect().height") == 0
                    footer = page.locator("footer.bd-footer-content").inner_text()
                    assert "By the lguest-book authors" in footer and "not set" not in footer, footer
                page.goto(f"{root}/search.html?q=demand_page", wait_until="networkidle")
                page.wait_for_selector("ul.search li p.context")
                excerpts = page.locator("ul.search li p.context").all_inner_texts()
                assert any("demand_page" in e for e in excerpts), (root, excerpts)
                assert not problems, problems
                page.close()
        finally:
            browser.close()
