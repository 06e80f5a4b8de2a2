"""The book's static HTML edition: every chapter from its stored outputs, readable offline.

:func:`build` runs Sphinx with myst-nb (execution off) and sphinx-book-theme over a copy of
the chapters.  The pages load nothing from outside the site: RequireJS, the widget manager
(``@jupyter-widgets/html-manager``'s ``embed-amd.js`` and its fonts) and MathJax 3 come from
their npm packages, installed once into ``$XDG_CACHE_HOME/lguest-book/npm`` (or the folder
``$LGUEST_BOOK_NPM`` names), and are copied into the site.  Two adjustments make them work
together: the widget manager is told where its font files are (``__jupyter_widgets_assets_path__``),
and MathJax 3 gets the small ``MathJax.Hub.Queue`` that ipywidgets calls (a MathJax 2 API).

Before building, :func:`widget_problems` checks that every widget view a chapter shows has its
model, and every model that model refers to, in the chapter's saved widget state (a view
without it renders as nothing, silently); the build refuses a book where one is missing.

The site's copy of each chapter says what its widgets are (:func:`_site_notebook`): a note at
the top of every page with a widget, and under each widget, that it is a picture of its saved
state and how to use it live; and under the lab's hint ladder, whose hints the saved state does
not hold (the widget computes each rung when its button is pressed), every challenge's hints as
folded ``<details>``, read from :data:`lguest_book.lab.CHALLENGES`.

Opened from the disk (``file://``), a browser refuses the requests Sphinx's search makes for
each result's excerpt; the search page then reads the excerpts from ``_static/search-pages.js``,
the text of every page, which it loads as a script (see :data:`SEARCH_OFFLINE`).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .book import WIDGET_VIEW, chapters
from .locate import cache_dir

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
NPM_PACKAGES = {  # package -> the version range the site is built and tested with
    "@jupyter-widgets/html-manager": "1",
    "requirejs": "2",
    "mathjax": "3",
}


class SiteError(RuntimeError):
    """The HTML edition cannot be built (the message says why and what to do)."""


# --- checks -----------------------------------------------------------------------------------
def widget_problems(notebook: Path | str) -> list[str]:
    """Widget views whose model (or a model it refers to) is missing from the saved state."""
    import nbformat

    nb = nbformat.read(notebook, 4)
    models = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    problems = []
    for n, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if not view:
                continue
            todo, seen = [view.get("model_id")], set()
            while todo:
                model = todo.pop()
                if model in seen:
                    continue
                seen.add(model)
                if model not in models:
                    what = "its model" if model == view.get("model_id") else f"model {model}, which it refers to,"
                    problems.append(f"{Path(notebook).name}: cell {n}'s widget view shows nothing: "
                                    f"{what} is not in the saved widget state (run `lguest-book book execute`)")
                    continue
                todo.extend(re.findall(r"IPY_MODEL_([0-9a-f]{32})", json.dumps(models[model])))
    return problems


# --- the JavaScript the pages need, from npm ------------------------------------------------
def npm_prefix() -> Path:
    named = os.environ.get("LGUEST_BOOK_NPM")
    return Path(named) if named else cache_dir("npm")


def _installed(prefix: Path) -> bool:
    modules = prefix / "node_modules"
    return all((modules / name / "package.json").is_file() for name in NPM_PACKAGES)


def javascript(fetch: bool = True) -> Path:
    """The ``node_modules`` folder holding the three packages; installs them with npm once."""
    prefix = npm_prefix()
    if _installed(prefix):
        return prefix / "node_modules"
    specs = [f"{name}@{version}" for name, version in NPM_PACKAGES.items()]
    command = ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error", *specs]
    if fetch and shutil.which("npm"):
        print(f"fetching {', '.join(specs)} from npm into {prefix} (once)", file=sys.stderr)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode == 0 and _installed(prefix):
            return prefix / "node_modules"
        detail = (done.stderr.strip().splitlines() or ["npm failed"])[-1]
        raise SiteError(f"npm could not install the site's JavaScript ({detail}); it needs: {' '.join(command)}")
    raise SiteError(f"the HTML edition needs {', '.join(specs)} from npm, not found in {prefix}: "
                    f"install Node.js/npm and run: {' '.join(command)}")


def _vendor(modules: Path, static: Path) -> None:
    """Copy what the pages load into the site's ``_static/vendor``."""
    vendor = static / "vendor"
    (vendor / "html-manager").mkdir(parents=True)
    shutil.copy(modules / "requirejs" / "require.js", vendor / "require.js")
    for path in (modules / "@jupyter-widgets" / "html-manager" / "dist").iterdir():
        if path.is_file() and not path.name.endswith((".map", ".txt")) and path.name not in ("embed.js", "libembed-amd.js"):
            shutil.copy(path, vendor / "html-manager" / path.name)
    es5 = modules / "mathjax" / "es5"
    mathjax = vendor / "mathjax"
    mathjax.mkdir()
    shutil.copy(es5 / "tex-chtml.js", mathjax / "tex-chtml.js")
    for sub in ("output/chtml/fonts/woff-v2", "input/tex/extensions", "a11y", "ui", "adaptors"):
        if (es5 / sub).is_dir():
            shutil.copytree(es5 / sub, mathjax / sub)
    for name in NPM_PACKAGES:  # their licences travel with them
        license_file = next((p for p in (modules / name).glob("LICENSE*")), None)
        if license_file:
            shutil.copy(license_file, vendor / f"LICENSE.{name.replace('/', '-').lstrip('@')}")
    (vendor / "widgets-setup.js").write_text(WIDGETS_SETUP)


# Loaded after require.js, before embed-amd.js.  The widget manager finds its font files
# relative to the URL RequireJS gives its module "@jupyter-widgets/html-manager/dist/...",
# which by default is the site's root: map that module path onto the copy next to this file.
WIDGETS_SETUP = """\
(function () {
  var here = document.currentScript && document.currentScript.src;
  if (!here) { return; }
  var dist = new URL("html-manager", here).href;
  window.__jupyter_widgets_assets_path__ = dist + "/";
  if (window.requirejs && window.requirejs.config) {
    window.requirejs.config({paths: {"@jupyter-widgets/html-manager/dist": dist, "@jupyter-widgets": dist}});
  }
})();
"""

# window.MathJax before MathJax 3 loads: the TeX delimiters, and a MathJax.Hub.Queue (MathJax 2's
# API, which ipywidgets calls to typeset widget labels) that typesets with MathJax 3.
MATHJAX_CONFIG = """\
(function () {
  function queue() {
    for (var i = 0; i < arguments.length; i++) {
      var job = arguments[i];
      if (typeof job === "function") { job(); continue; }
      if (Array.isArray(job) && job[0] === "Typeset") {
        var element = job[2];
        var ready = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
        if (ready && window.MathJax.typesetPromise) {
          ready.then(function () { return window.MathJax.typesetPromise(element ? [element] : undefined); });
        }
      }
    }
  }
  window.MathJax = {
    tex: {inlineMath: [["\\\\(", "\\\\)"]], displayMath: [["\\\\[", "\\\\]"]], processEscapes: true},
    options: {processHtmlClass: "tex2jax_process|mathjax_process|math|output_area"},
    startup: {ready: function () { window.MathJax.startup.defaultReady(); window.MathJax.Hub = {Queue: queue}; }},
    Hub: {Queue: queue}
  };
})();
"""

CONF = """\
# Sphinx configuration of lguest-book's HTML edition (written by `lguest-book book html`).
project = "lguest-book"
author = "the lguest-book authors"
html_title = "lguest's shadow page tables, executable"
extensions = ["myst_nb"]
nb_execution_mode = "off"            # the stored outputs are the book
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
html_theme = "sphinx_book_theme"
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    # pydata-sphinx-theme otherwise adds a header bar holding a second search button above
    # the sidebar's own search box
    "navbar_persistent": [],
}
html_context = {"default_mode": "light"}   # else the first load logs "Got invalid theme mode"
html_static_path = ["_site_static"]
html_css_files = ["site.css"]
html_copy_source = True            # the download button offers the chapter's .ipynb
html_show_sourcelink = False
html_last_updated_fmt = None
mathjax_path = "vendor/mathjax/tex-chtml.js"
mathjax_config_path = "mathjax_config.js"
nb_ipywidgets_js = {
    "vendor/require.js": {},
    "vendor/widgets-setup.js": {},
    "vendor/html-manager/embed-amd.js": {"data-jupyter-widgets-cdn": "vendor/no-cdn/", "data-jupyter-widgets-cdn-only": ""},
}
exclude_patterns = ["_build", "_site_static", "**/.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type"]
html_favicon = "_site_static/favicon.svg"

import json
import re
from pathlib import Path

SEARCH_OFFLINE = Path(__file__).with_name("search_offline.js").read_text()
_bodies = {}


def _page(app, pagename, templatename, context, doctree):
    if "body" in context and doctree is not None:
        # what the search excerpts are cut from: the page's body without its scripts and pictures
        # (the highlighting's <span>s, a third of it, go too)
        body = re.sub(r"<(script|style|svg)\\b.*?</\\1>", "", context["body"], flags=re.S)
        _bodies[pagename + app.builder.out_suffix] = re.sub(r"<img\\b[^>]*>|</?span\\b[^>]*>", "", body)
    if pagename == "search":
        static = Path(app.outdir) / "_static"
        static.mkdir(exist_ok=True)
        (static / "search-pages.js").write_text(
            "window.LGUEST_BOOK_PAGES = " + json.dumps(_bodies, sort_keys=True) + ";\\n" + SEARCH_OFFLINE)
        app.add_js_file("search-pages.js")


def setup(app):
    # MathJax on every page, not only on pages with an equation: widget labels may hold math,
    # and ipywidgets typesets them with whatever MathJax the page has.
    app.set_html_assets_policy("always")
    app.connect("html-page-context", _page)
"""

# Loaded by the search page only.  Sphinx's search fetches each result's page to cut an excerpt
# from it; a page opened from the disk may not fetch another file, so there the text of every
# page (window.LGUEST_BOOK_PAGES, written beside this at build time) answers instead.
SEARCH_OFFLINE = """\
(function () {
  if (window.location.protocol !== "file:" || !window.fetch) { return; }
  var pages = window.LGUEST_BOOK_PAGES || {};
  var fetchFromServer = window.fetch;
  window.fetch = function (resource) {
    var url = new URL(typeof resource === "string" ? resource : resource.url, window.location.href);
    var name = decodeURIComponent(url.pathname.split("/").pop());
    if (url.protocol === "file:" && Object.prototype.hasOwnProperty.call(pages, name)) {
      var page = '<html><body><main role="main">' + pages[name] + "</main></body></html>";
      return Promise.resolve(new Response(page, {headers: {"Content-Type": "text/html"}}));
    }
    return fetchFromServer.apply(this, arguments);
  };
})();
"""

SITE_CSS = """\
/* the hint ladders of the lab, folded one inside the other */
details.lguest-hints { margin: 0.5rem 0 1rem; }
details.lguest-hints summary { cursor: pointer; }
details.lguest-hints details { margin-left: 1.25rem; }
details.lguest-hints details p { margin: 0.25rem 0 0.5rem 1.25rem; }
p.lguest-static-widget { color: var(--pst-color-text-muted); margin-top: 0.25rem; }
"""

FAVICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#2a5d8f"/>\
<path d="M3 4h10M3 8h10M3 12h10" stroke="#fff" stroke-width="1.6"/></svg>
"""


# --- what the site adds to each chapter ------------------------------------------------------
STATIC_WIDGETS_NOTE = """\
```{{admonition}} The widgets on this page are pictures
:class: note lguest-static-widgets

Each widget on this page shows the state it was saved in: its buttons, sliders and boxes do
nothing here, because no Python runs behind a web page.  To use them live, open the book in
JupyterLab with `lguest-book open` (after `pip install lguest-book`), or open this chapter's
notebook, `{notebook}` (the download button above offers it), in JupyterLab with lguest-book
installed, and run it.
```
"""

WIDGET_CAPTION = ('<p class="lguest-static-widget"><small>The widget above is a picture of its saved state; '
                  'it works in JupyterLab (<code>lguest-book open</code>).</small></p>')

HINT_LADDER = "Hint ladder:"   # how the lab's hint ladder describes itself (its text/plain)


def _hints_html() -> str:
    """Every challenge's hint ladder as folded ``<details>``, one rung inside the other's reach."""
    from .lab import CHALLENGES

    e = html.escape
    lines = ['<details class="lguest-hints">',
             "<summary>Hints (the notebook reveals them one at a time)</summary>"]
    for c in CHALLENGES.values():
        lines.append(f'<details class="lguest-hint-ladder" id="hints-{e(c.id)}">')
        lines.append(f"<summary><b>{e(c.id)}</b>: {e(c.goal)} ({e(c.where)})</summary>")
        if c.setting:
            lines.append(f"<p><i>On {e(c.setting)}.</i></p>")
        for n, hint in enumerate(c.hints, 1):
            lines.append(f"<details><summary>hint {n} of {len(c.hints)}</summary><p>{e(hint)}</p></details>")
        lines.append("</details>")
    lines.append("</details>")
    return "\n".join(lines)  # one HTML block: no blank line inside


def _site_notebook(notebook: Path, dest: Path) -> None:
    """Copy a chapter for the site, with notes on its widgets (and the hint ladder's hints)."""
    import nbformat

    nb = nbformat.read(notebook, 4)
    cells, widgets = [], 0
    for cell in nb.cells:
        cells.append(cell)
        views = [o["data"] for o in cell.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
        if not views:
            continue
        widgets += len(views)
        ladder = any("".join(v.get("text/plain", "")).startswith(HINT_LADDER) for v in views)
        added = WIDGET_CAPTION + ("\n" + _hints_html() if ladder else "")
        cells.append(nbformat.v4.new_markdown_cell(added, id=f"lguest-site-{len(cells)}"))
    if widgets:  # under the first markdown cell (the title and the opening)
        first = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), -1)
        note = STATIC_WIDGETS_NOTE.format(notebook=notebook.name)
        cells.insert(first + 1, nbformat.v4.new_markdown_cell(note, id="lguest-site-note"))
    nb.cells = cells
    nbformat.write(nb, dest)


def _index(book: Path, names: list[str]) -> str:
    readme = book / "README.md"
    text = readme.read_text() if readme.is_file() else "# lguest-book\n"
    # the commands in the book's README are for a clone; the site's readers may have none
    text = text.split("\nCommands (from the repository root)")[0].rstrip() + "\n"
    text = text.replace("# The book", "# lguest's shadow page tables, executable", 1)
    toc = "\n".join(Path(n).stem for n in names)
    return text + f"\n```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toc}\n```\n"


def build(book: Path | str, out: Path | str, *, quiet: bool = True) -> Path:
    """Build the HTML edition of ``book`` into ``out``; returns the path of its index.html."""
    book, out = Path(book), Path(out)
    notebooks = chapters(book)
    if not notebooks:
        raise SiteError(f"no chapter notebooks (NN-name.ipynb) in {book}")
    problems = [p for nb in notebooks for p in widget_problems(nb)]
    if problems:
        raise SiteError("widget views without saved state:\n  " + "\n  ".join(problems))
    try:
        import myst_nb  # noqa: F401
        import sphinx_book_theme  # noqa: F401
    except ImportError as err:
        raise SiteError(f"the HTML edition needs Sphinx, myst-nb and sphinx-book-theme ({err.name} is missing): "
                        "pip install 'lguest-book[site]'") from None
    modules = javascript()
    with tempfile.TemporaryDirectory(prefix="lguest-book-site-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for nb in notebooks:
            _site_notebook(nb, src / nb.name)
        (src / "index.md").write_text(_index(book, [nb.name for nb in notebooks]))
        (src / "conf.py").write_text(CONF)
        (src / "mathjax_config.js").write_text(MATHJAX_CONFIG)
        (src / "search_offline.js").write_text(SEARCH_OFFLINE)
        _vendor(modules, src / "_site_static")
        (src / "_site_static" / "favicon.svg").write_text(FAVICON)
        (src / "_site_static" / "site.css").write_text(SITE_CSS)
        # built inside the temporary folder (myst-nb writes beside the output folder), then copied
        html, doctrees = Path(tmp) / "build" / "html", Path(tmp) / "build" / "doctrees"
        command = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-W", "--keep-going", "-d", str(doctrees),
                   *(["-q"] if quiet else []), str(src), str(html)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SiteError(f"sphinx failed:\n{(done.stderr or done.stdout).strip()[-3000:]}")
        for leftover in (".buildinfo", ".buildinfo.bak"):
            (html / leftover).unlink(missing_ok=True)
        # the download button offers the chapter as the book has it, without the site's notes
        for nb in notebooks:
            if (html / "_sources" / nb.name).is_file():
                shutil.copy(nb, html / "_sources" / nb.name)
        (html / ".nojekyll").write_text("")  # GitHub Pages: serve _static/ as it is
        # Some widget styles (the icons of buttons) ask for their fonts page-relative, under
        # "@jupyter-widgets/": serve the same font files there too.
        fonts = html / "@jupyter-widgets"
        fonts.mkdir(exist_ok=True)
        for font in (html / "_static" / "vendor" / "html-manager").iterdir():
            if font.suffix in (".woff", ".woff2", ".ttf", ".eot", ".svg"):
                shutil.copy(font, fonts / font.name)
        shutil.copytree(html, out, dirs_exist_ok=True)
    return out / "index.html"
