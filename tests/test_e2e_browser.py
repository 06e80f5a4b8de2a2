"""End to end, in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium driven by
Playwright, a notebook showing the fault stepper; run it, press Step, see the step's text,
the model's source line and a rendered plot.  The screenshot is kept in build/e2e/."""

from pathlib import Path

import pytest

from lguest_book import _e2e

ARTIFACT = Path(__file__).resolve().parent.parent / "build" / "e2e" / "fault-stepper.png"


def test_fault_stepper_in_jupyterlab_and_chromium():
    if _e2e.chromium_path() is None:
        pytest.skip("Debian's chromium is not installed (scripts/bootstrap test installs it)")
    pytest.importorskip("playwright", reason="playwright is not installed (pip install -e .[test])")
    shown = _e2e.run_stepper_in_browser(ARTIFACT, steps=5)
    assert shown["first"].startswith("step 0 of ")
    assert "The Guest makes a write of 0x8048000 from user mode" in shown["first"]
    # five presses of Step: entering the Guest, the fault, two checks, then the Guest's
    # top-level entry is read
    assert shown["text"].startswith("step 5 of ")
    assert "read the Guest's pgd_t at 0x208080" in shown["text"]
    assert shown["source"].startswith("page_tables.py:") and "lgread" in shown["source"]
    width, height = shown["image_size"]
    assert width >= 400 and height >= 250  # the PNG of the walks really rendered
    assert ARTIFACT.exists() and ARTIFACT.stat().st_size > 20_000
    print(f"\nscreenshot: {ARTIFACT}")
