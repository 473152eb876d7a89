"""The Anomalies page's panel in a real browser (Debian's Chromium driven by Playwright): an image
of the ranking opened, with its reconstruction and its anomaly map over it, both served by the
app's routes; a screenshot in tests/artifacts/screens/anomalies-panel.png."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.test_browser import (  # noqa: F401  (fixtures, used by name)
    CHROMIUM,
    app_url,
    app_ws,
    browser,
    open_page,
    screenshot,
    settle,
)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (make browser)")

# every picture of the panel loaded: the image, the reconstruction and the map from the routes
PANEL_PAINTED = """() => {
  const panel = document.querySelector('.st-key-anomaly-panel');
  if (!panel) return false;
  const imgs = Array.from(panel.querySelectorAll('img'));
  const map = panel.querySelector('img.fext-anomaly-map');
  return !!map && imgs.length >= 4 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""
OPACITY = "() => document.querySelector('img.fext-anomaly-map').style.opacity"
# every thumbnail of the grid loaded: a late one moves the buttons below it
GRID_LOADED = """() => Array.from(document.querySelectorAll("[data-testid='stMain'] img"))
  .every(i => i.complete && i.naturalWidth > 0)"""


def inspect_first(page) -> None:
    """Click the Inspect button of the tile ranked #1, once the grid has stopped moving."""
    tile = page.locator("[data-testid='stColumn']").filter(has_text="#1 · ").filter(
        has=page.get_by_role("button", name="Inspect")).last
    tile.scroll_into_view_if_needed()
    page.wait_for_function(GRID_LOADED, timeout=60_000)
    settle(page)
    tile.get_by_role("button", name="Inspect").click()


def test_inspecting_an_image_opens_its_panel_with_its_map(browser, app_url, app_ws):  # noqa: F811
    from fext.artifacts import Artifacts

    art = Artifacts.open(app_ws, "demo")
    order = np.argsort(-art.scores(), kind="stable")  # as the page ranks them
    first = art.items["path"].iat[int(order[0])]
    page = open_page(browser, f"{app_url}/anomalies")
    inspect_first(page)
    panel = page.locator(".st-key-anomaly-panel")
    expect(panel).to_be_visible(timeout=60_000)
    page.wait_for_function(PANEL_PAINTED, timeout=120_000)
    settle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    expect(panel).to_contain_text(f"#1 · {first}")
    for part in ("Image", "Reconstruction", "Where it is unusual", "What the score is made of",
                 "reconstruction error", "Nearest normal images"):
        expect(panel).to_contain_text(part)
    # the map lies over the image: same box, the image's own aspect ratio
    boxes = page.evaluate("""() => {
      const map = document.querySelector('img.fext-anomaly-map');
      const under = map.previousElementSibling;
      const r = e => { const b = e.getBoundingClientRect(); return [b.x, b.y, b.width, b.height]; };
      return {map: r(map), under: r(under), ratio: map.naturalWidth / map.naturalHeight,
              underRatio: under.naturalWidth / under.naturalHeight}; }""")
    assert boxes["map"] == pytest.approx(boxes["under"], abs=1)
    assert boxes["ratio"] == pytest.approx(boxes["underRatio"], rel=0.05)
    assert float(page.evaluate(OPACITY)) == pytest.approx(0.6)
    screenshot(page, "anomalies-panel")
    # the opacity control: the map fades out, and the page does not run the model for it
    page.get_by_role("slider", name="Map opacity").focus()
    page.keyboard.press("Home")
    page.wait_for_function(f"() => ({OPACITY})() === '0'", timeout=60_000)
    settle(page)
    # choosing a rank opens that image's panel instead
    third = art.items["path"].iat[int(order[2])]
    number = page.get_by_role("spinbutton", name="Inspect the image ranked")
    number.fill("3")
    number.press("Enter")
    expect(panel).to_contain_text(f"#3 · {third}", timeout=60_000)
    page.get_by_role("button", name="Close").click()
    expect(panel).to_have_count(0, timeout=60_000)
    page.close()
