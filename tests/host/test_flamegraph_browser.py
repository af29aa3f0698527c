"""The flame graph SVG in a real headless browser (Debian's chromium via playwright)."""

from __future__ import annotations

import os
import shutil

import pytest

from kprobes.output.flamegraph import flamegraph_svg

ARTIFACTS = os.environ.get("KPROBES_ARTIFACTS", "/tmp/kprobes-artifacts")


def _browser() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    return exe


def test_svg_zooms_on_click_and_searches(tmp_path: object) -> None:
    exe = _browser()
    from playwright.sync_api import sync_playwright
    stacks = [(["main", "top", "mid", "leaf"], 60), (["main", "top", "other"], 30),
              (["main", "idle"], 10)]
    path = str(tmp_path / "fg.svg")
    with open(path, "w") as f:
        f.write(flamegraph_svg(stacks, title="test"))
    os.makedirs(ARTIFACTS, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = b.new_page(viewport={"width": 1250, "height": 200})
            page.goto(f"file://{path}")

            def widths() -> dict[str, float]:
                return page.evaluate("""() => Object.fromEntries(
                    [...document.querySelectorAll('.f')].filter(g => g.style.display !== 'none')
                    .map(g => [g.dataset.name, +g.querySelector('rect').getAttribute('width')]))""")
            before = widths()
            assert before["leaf"] == pytest.approx(before["all"] * 0.6, rel=1e-3)
            page.hover('.f[data-name="leaf"]')
            assert "leaf (60 samples, 60.00%)" in page.text_content("#details")
            page.click('.f[data-name="mid"]')
            after = widths()
            assert after["leaf"] == pytest.approx(before["all"], rel=1e-3)   # mid fills the width
            assert after["top"] == pytest.approx(before["all"], rel=1e-3)    # ancestors too
            assert "other" not in after and "idle" not in after              # the rest hides
            page.screenshot(path=os.path.join(ARTIFACTS, "flamegraph-zoomed.png"))
            page.click("#unzoom")
            assert widths() == pytest.approx(before)
            page.evaluate("flamegraph.search('^(leaf|other)$')")
            assert page.locator(".hl").count() == 2
            assert "Matched: 90 samples, 90.00%" in page.text_content("#matched")
        finally:
            b.close()
