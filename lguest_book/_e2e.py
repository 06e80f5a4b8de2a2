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


def run_stepper_in_browser(screenshot: Path, steps: int = 5, timeout_ms: int = 90_000) -> dict:
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
                img = page.locator("img.lgb-plot").first
                img.wait_for()
                page.wait_for_function(
                    "() => { const i = document.querySelector('img.lgb-plot'); return i && i.complete && i.naturalWidth > 0; }")
                size = page.evaluate("() => { const i = document.querySelector('img.lgb-plot');"
                                     " return [i.naturalWidth, i.naturalHeight]; }")
                img.scroll_into_view_if_needed()
                page.locator(".lgb-step-text").first.scroll_into_view_if_needed()
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=False)
            finally:
                browser.close()
        return {"first": first, "text": shown, "source": source, "image_size": tuple(size), "screenshot": str(screenshot)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover - used by scripts/screenshot
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/fault-stepper.png")
    print(json.dumps(run_stepper_in_browser(out), indent=2))
