"""Drive the book's fault stepper in a real browser: JupyterLab on 127.0.0.1, Debian's
Chromium through Playwright (``executable_path``: Playwright never downloads a browser here).

Used by ``tests/test_e2e_browser.py`` and by ``scripts/screenshot`` (the README's picture).
Everything it starts it stops; everything it writes goes to a temporary folder except the
screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

NOTEBOOK_CELLS = [
    "from lguest_book.guest import Guest\n"
    "from lguest_book import widgets\n"
    "g = Guest(pae=False, seed=1)\n"
    "p = g.new_process('init')\n"
    "g.switch_to(p)\n"
    "g.map(0x08048000, 0x300, accessed=False)\n"
    "stepper = widgets.FaultStepper(g, 0x08048000, write=True, user=True)\n"
    "stepper",
    "from lguest_book import recorder\n"
    "run = recorder.workload(recorder.Recorder.boot(pae=False, seed=1), 2000, seed=3)\n"
    "widgets.Scrubber(run)",
    "explorer = widgets.TableExplorer(g, which='guest')\n"
    "explorer.select(level='pte', vaddr=0xc0000000)\n"
    "explorer",
    "console = widgets.HypercallConsole(Guest(pae=False, seed=1))\n"
    "console",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(folder: Path, name: str = "stepper.ipynb") -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    path = folder / name
    nbformat.write(nb, path)
    return path


@contextmanager
def jupyterlab(folder: Path, timeout: float = 60.0, extra_args: tuple = (), log_copy: Path | None = None):
    """A JupyterLab server on 127.0.0.1 serving ``folder``; yields its base URL and token.
    ``extra_args`` go on its command line; ``log_copy`` keeps its log once it has stopped."""
    port = _free_port()
    token = os.urandom(12).hex()
    home = Path(tempfile.mkdtemp(prefix="lgb-jupyter-"))
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / "ipython"),
        MPLBACKEND="Agg",
        PYTHONUNBUFFERED="1",
    )
    # Settings overrides: no news popup, no "Would you like to get notified" toast.
    settings = home / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--ServerApp.token={token}", f"--ServerApp.root_dir={folder}", "--ServerApp.open_browser=False",
        "--allow-root", "--LabApp.expose_app_in_browser=True", f"--LabServerApp.user_settings_dir={settings}",
        f"--LabServerApp.workspaces_dir={home / 'workspaces'}", *extra_args,
    ]
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: {(home / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("JupyterLab did not start in time")
            time.sleep(0.5)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if log_copy is not None:
            shutil.copy(home / "server.log", log_copy)
        shutil.rmtree(home, ignore_errors=True)


# Press the button labelled args[1] args[2] times; after each press wait until the widget
# args[0] shows something new and the browser has painted it; return the times (ms).
_MEASURE = """async ([selector, label, times]) => {
  const out = document.querySelector(selector);
  const root = out.closest('.jp-OutputArea-output') || document;
  const button = () => [...root.querySelectorAll('button')].find(b => b.textContent.trim() === label);
  const took = [];
  for (let i = 0; i < times; i++) {
    const b = button();
    if (!b || b.disabled) break;
    const before = out.innerHTML;
    const changed = new Promise(resolve => {
      const seen = new MutationObserver(() => { if (out.innerHTML !== before) { seen.disconnect(); resolve(); } });
      seen.observe(out, {subtree: true, childList: true, characterData: true, attributes: true});
    });
    const t0 = performance.now();
    b.click();
    await changed;
    await new Promise(resolve => requestAnimationFrame(() => setTimeout(resolve, 0)));
    took.push(performance.now() - t0);
    await new Promise(resolve => setTimeout(resolve, 30));
  }
  return took;
}"""


# Type each of args[2] into the input args[1] (a change event, as Enter or leaving the box
# does), or press each key of args[2] on the element args[1]; after each, wait until args[0]
# shows something new and the browser painted it; return the times (ms).
_MEASURE_INPUT = """async ([selector, target, values, keys]) => {
  const out = document.querySelector(selector);
  const el = document.querySelector(target);
  const took = [];
  for (const v of values) {
    const before = out.innerHTML;
    const changed = new Promise(resolve => {
      const seen = new MutationObserver(() => { if (out.innerHTML !== before) { seen.disconnect(); resolve(); } });
      seen.observe(out, {subtree: true, childList: true, characterData: true, attributes: true});
    });
    const t0 = performance.now();
    if (keys) {
      el.focus();
      el.dispatchEvent(new KeyboardEvent('keydown', {key: v, code: v, bubbles: true}));
    } else {
      el.value = v;
      el.dispatchEvent(new Event('change', {bubbles: true}));
    }
    await changed;
    await new Promise(resolve => requestAnimationFrame(() => setTimeout(resolve, 0)));
    took.push(performance.now() - t0);
    await new Promise(resolve => setTimeout(resolve, 30));
  }
  return took;
}"""


def median(values):
    values = sorted(values)
    n = len(values)
    return (values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2) if n else float("nan")


def run_stepper_in_browser(screenshot: Path, steps: int = 5, timeout_ms: int = 90_000, measure: bool = False) -> dict:
    """Open a notebook that shows a FaultStepper, run it, press Step ``steps`` times, and
    save a screenshot.  Returns what the page showed (texts, image size)."""
    from playwright.sync_api import sync_playwright

    chromium = chromium_path()
    if chromium is None:
        raise FileNotFoundError("no chromium on PATH (apt-get install chromium)")
    folder = Path(tempfile.mkdtemp(prefix="lgb-e2e-"))
    try:
        write_notebook(folder)
        with jupyterlab(folder) as (base, token), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1100})
                page.set_default_timeout(timeout_ms)
                page.goto(f"{base}/lab/tree/stepper.ipynb?token={token}")
                page.wait_for_selector(".jp-Notebook .jp-Cell")
                # wait for the kernel to be idle, then run every cell
                page.wait_for_function(
                    "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                    " && window.jupyterapp.shell.currentWidget.sessionContext"
                    " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                    " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                    " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'"
                )
                page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
                text = page.locator(".lgb-step-text").first
                text.wait_for()
                first = text.inner_text()
                step = page.get_by_role("button", name="Step", exact=True)
                for k in range(1, steps + 1):
                    step.click()
                    page.wait_for_function(
                        "k => { const e = document.querySelector('.lgb-step-text');"
                        " return e && e.innerText.includes('step ' + k + ' of'); }", arg=k)
                shown = text.inner_text()
                source = page.locator(".lgb-source").first.inner_text()
                picture = page.locator(".lgb-plot").first
                picture.wait_for()
                marked = picture.inner_text()
                size = page.evaluate("() => { const r = document.querySelector('.lgb-plot').getBoundingClientRect();"
                                     " return [r.width, r.height]; }")
                page.locator(".lgb-step-text").first.scroll_into_view_if_needed()
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=False)
                latencies, scrubber = [], []
                if measure:
                    # click-to-picture: from the click to the new picture painted, timed in the page
                    for label, times in (("Step", 20), ("Back", 8), ("Next change", 3), ("Next decision", 3)):
                        latencies += page.evaluate(_MEASURE, [".lgb-stepper", label, times])
                    page.locator(".lgb-scrubber").first.wait_for()
                    page.locator(".lgb-scrubber").first.scroll_into_view_if_needed()
                    for label, times in (("Next", 10), ("Next change", 5), ("Back", 5)):
                        scrub = page.evaluate(_MEASURE, [".lgb-scrubber", label, times])
                        latencies += scrub
                        scrubber += scrub
                # the explorer: type an index, the list selects it and scrolls to it
                listbox = page.locator(".lgb-entries select").first
                listbox.wait_for()
                listbox.scroll_into_view_if_needed()
                index_box = page.locator(".lgb-index input").first
                index_box.fill("0x3ff")
                index_box.press("Enter")
                page.wait_for_function("() => { const s = document.querySelector('.lgb-entries select');"
                                       " return s && s.selectedIndex === 1023; }")
                if measure:
                    # the explorer: type indices; the scrubber: the slider's arrow key
                    typed = [f"{i:#05x}" for i in (0x10, 0x200, 0x3fe, 0x7, 0x155)]
                    other = page.evaluate(_MEASURE_INPUT, [".lgb-detail", ".lgb-index input", typed, False])
                    other += page.evaluate(_MEASURE_INPUT, [".lgb-scrubber", ".lgb-scrubber-slider .noUi-handle",
                                                            ["ArrowRight"] * 5, True])
                    latencies += other
                    # the console: each press adds a line to its log
                    page.locator(".lgb-log").first.scroll_into_view_if_needed()
                    for label in ("new process", "FLUSH user", "touch", "FLUSH all", "SET_PTE"):
                        latencies += page.evaluate(_MEASURE, [".lgb-log", label, 1])
                    page.evaluate(_MEASURE_INPUT, [".lgb-detail", ".lgb-index input", ["0x3ff"], False])
                explorer = page.evaluate("() => { const s = document.querySelector('.lgb-entries select');"
                                         " return {options: s.options.length, selected: s.selectedIndex,"
                                         " scrolled: s.scrollTop, height: s.scrollHeight}; }")
            finally:
                browser.close()
        return {"explorer": explorer, "first": first, "text": shown, "source": source, "picture": marked, "image_size": tuple(size),
                "screenshot": str(screenshot), "latencies": latencies, "scrubber": scrubber}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover - used by scripts/screenshot
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/fault-stepper.png")
    print(json.dumps(run_stepper_in_browser(out), indent=2))
