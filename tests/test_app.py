"""Every page of the app through Streamlit's AppTest: content, uploads, and guidance when empty."""

import io

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import REPO
from corpus import bomb_png, shape_image

PAGES = ["collection", "train", "reconstruction", "map", "search", "anomalies", "features"]


def run_page(page: str, timeout: int = 120) -> AppTest:
    at = AppTest.from_file(str(REPO / "fext" / "ui" / f"{page}.py"), default_timeout=timeout)
    return at.run()


@pytest.fixture
def on_demo(app_ws, monkeypatch):
    monkeypatch.setenv("FEXT_WORKSPACE", str(app_ws.root))
    return app_ws


def texts(at: AppTest) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption] + \
            [e.value for e in at.title] + [e.value for e in at.subheader] + \
            [e.value for e in at.info] + [e.value for e in at.warning] + [e.value for e in at.error] + \
            [e.label for e in at.metric]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(on_demo, page):
    at = run_page(page)
    assert not at.exception, at.exception
    assert at.title and at.title[0].value.lower().startswith(page[:4])


def test_app_entry_opens_on_the_collection_page(on_demo):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert at.title[0].value == "Collection"
    assert "Readable images" in texts(at)


def test_collection_lists_skipped_files(on_demo):
    at = run_page("collection")
    assert {m.label: m.value for m in at.metric}["Skipped files"] == "2"
    assert any("notes.jpg" in str(df.value) for df in at.dataframe)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_search_by_upload_shows_k_results(on_demo):
    at = run_page("search")
    at.file_uploader[0].upload("query.png", _png(shape_image("blue", 3, 32)), "image/png")
    at.slider[0].set_value(5)
    at.run()
    assert not at.exception
    assert "5 results" in texts(at)
    shown = at.get("imgs") + at.get("image")
    assert len(shown) >= 6  # the query and its 5 results


def test_search_refuses_a_non_image_upload(on_demo):
    at = run_page("search")
    at.file_uploader[0].upload("notes.jpg", b"hello, I am text", "image/jpeg")
    at.run()
    assert not at.exception
    assert "cannot be used as a query image" in texts(at)


def test_search_refuses_a_bomb(on_demo):
    at = run_page("search")
    at.file_uploader[0].upload("huge.png", bomb_png(), "image/png")
    at.run()
    assert not at.exception and "too large" in texts(at)


def test_upload_into_a_new_collection_stays_in_the_workspace(on_demo):
    at = run_page("collection")
    uploader = at.file_uploader[0]
    uploader.upload("../../escape.png", _png(shape_image("red", 1)), "image/png")
    form_submit = [b for b in at.button if b.label == "Add to collection"][0]
    form_submit.click().run()
    assert not at.exception
    saved = list((on_demo.root / "data" / "uploads").rglob("*.png"))
    assert saved and all(on_demo.root in p.resolve().parents for p in saved)
    assert not (on_demo.root.parent / "escape.png").exists()


def test_features_page_offers_the_csv(on_demo):
    at = run_page("features")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "42" and metrics["Vector size"] == "8"


def test_anomaly_threshold_counts_images(on_demo):
    at = run_page("anomalies")
    threshold = at.slider[0]
    threshold.set_value(threshold.min).run()
    assert {m.label: m.value for m in at.metric}["Above threshold"] == "42"


def test_pages_before_any_model_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("FEXT_WORKSPACE", str(tmp_path))
    monkeypatch.setattr("fext.demo.DEMO_DIR", tmp_path / "no-demo")
    for page in ("search", "map", "anomalies", "features", "reconstruction"):
        at = run_page(page)
        assert not at.exception, page
        assert "Train" in texts(at), page
