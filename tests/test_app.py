"""Every page of the app through Streamlit's AppTest: content, uploads, jobs, and guidance when
there is nothing to show yet. The workspace is tests/app_fixtures.py's tiny trained one."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from fext.artifacts import Artifacts
from tests.app_fixtures import DIM, REPO, app_workspace
from tests.corpus import BROKEN, READABLE, bomb_png, png
from tests.corpus import shape_image as shape
from tests.helpers import run_cli, until

PAGES = ["collection", "train", "reconstruction", "map", "search", "anomalies", "duplicates",
         "features"]


@pytest.fixture(scope="session")
def app_ws(tmp_path_factory):
    return app_workspace(tmp_path_factory)


@pytest.fixture
def on_demo(app_ws, monkeypatch):
    """The app pointed at the shared tiny workspace (read-only use)."""
    monkeypatch.setenv("FEXT_WORKSPACE", str(app_ws.root))
    return app_ws


@pytest.fixture
def own_ws(app_ws, tmp_path, monkeypatch):
    """A private copy of the tiny workspace, for tests that start jobs or write files."""
    from fext.workspace import Workspace

    root = tmp_path / "ws"
    shutil.copytree(app_ws.root, root, ignore=shutil.ignore_patterns("jobs", ".*.lock"))
    monkeypatch.setenv("FEXT_WORKSPACE", str(root))
    return Workspace(root)


@pytest.fixture
def empty_ws(tmp_path, monkeypatch):
    """A workspace with no model, where the bundled demo images are missing."""
    from fext.workspace import Workspace

    monkeypatch.setenv("FEXT_WORKSPACE", str(tmp_path / "empty"))
    monkeypatch.setattr("fext.demo.DEMO_DIR", tmp_path / "no-demo")
    return Workspace(tmp_path / "empty")


@pytest.fixture
def fake_jobs():
    """Make stand-in background jobs: a real, harmless process plus the files a job writes."""
    procs = []

    def make(ws, command: str, name: str | None, progress: dict):
        from fext.jobs import Job
        from fext.workspace import write_json

        proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
        procs.append(proc)
        job_id = time.strftime("%Y%m%d-%H%M%S-") + f"{len(procs):06d}"
        d = ws.jobs_dir() / job_id
        d.mkdir(parents=True)
        write_json(d / "job.json", {"id": job_id, "command": command, "name": name, "args": [],
                                    "pid": proc.pid, "started": time.time()})
        write_json(d / "progress.json", {"status": "running", "stage": "", "done": 0, "total": 0,
                                         "info": {}, "history": [], **progress})
        return Job(job_id, d)

    yield make
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def run_page(page: str, timeout: int = 120) -> AppTest:
    at = AppTest.from_file(str(REPO / "fext" / "ui" / f"{page}.py"), default_timeout=timeout)
    return at.run()


def texts(at: AppTest) -> str:
    """Every piece of text on the page, for 'does it say X' assertions."""
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption] + \
            [e.value for e in at.title] + [e.value for e in at.subheader] + \
            [e.value for e in at.info] + [e.value for e in at.warning] + \
            [e.value for e in at.error] + [e.value for e in at.success] + \
            [e.label for e in at.metric] + [e.label for e in at.button]
    return "\n".join(str(p) for p in parts)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def image_captions(at: AppTest) -> list[str]:
    return [c for el in at.get("image") for c in el.captions]


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def links(at: AppTest) -> dict[str, str]:
    """Link buttons (the CSV downloads: they open the app's routes) as label -> URL."""
    return {e.proto.label: e.proto.url for e in at.get("link_button")}


def widget(widgets, label_start: str):
    return next(w for w in widgets if w.label.startswith(label_start))


# -- every page ---------------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(on_demo, page):
    at = run_page(page)
    assert not at.exception, at.exception
    assert at.title and at.title[0].value.lower().startswith(page[:4])
    assert at.caption, "every page says what it is for"
    assert at.sidebar.selectbox[0].value == "demo"


def test_app_script_opens_on_the_collection_page_and_navigates(on_demo):
    at = AppTest.from_file(str(REPO / "fext" / "ui" / "main.py"), default_timeout=120).run()
    assert not at.exception
    assert at.title[0].value == "Collection"
    assert "Readable images" in texts(at)
    for page in PAGES[1:]:
        at.switch_page(f"{page}.py").run()
        assert not at.exception, page
        assert at.title[0].value.lower().startswith(page[:4])


# -- collection ---------------------------------------------------------------------------------
def test_collection_shows_counts_and_skipped_files(on_demo):
    at = run_page("collection")
    m = metrics(at)
    assert m["Readable images"] == str(READABLE) and m["Skipped files"] == str(len(BROKEN))
    assert m["Labels"] == "3"
    skipped = at.dataframe[0].value
    assert set(skipped["path"]) == set(BROKEN)
    assert skipped["reason"].str.len().min() > 0  # every skipped file says why
    captions = image_captions(at)
    assert len(captions) == 12
    # the samples come from every split, not only the one the first content hashes fall in
    assert {c.rsplit(" · ", 1)[-1] for c in captions} == {"train", "val", "test"}


def test_rescan_picks_up_a_new_file(own_ws):
    from fext.registry import open_record

    folder = Path(open_record(own_ws, "demo").images)
    at = run_page("collection")
    (folder / "red" / "zz_new.png").write_bytes(png(shape("red", 99)))
    try:
        button(at, "Rescan").click().run()
        assert not at.exception
        assert metrics(at)["Readable images"] == str(READABLE + 1)
    finally:
        (folder / "red" / "zz_new.png").unlink()


def test_upload_into_a_new_collection_stays_in_the_workspace(own_ws):
    at = run_page("collection")
    at.file_uploader[0].upload("../../escape.png", png(shape("red", 1)), "image/png")
    button(at, "Add to collection").click().run()
    assert not at.exception
    saved = list(own_ws.uploads_dir().rglob("*.png"))
    assert [p.name for p in saved] == ["escape.png"]
    assert all(own_ws.root in p.resolve().parents for p in saved)
    assert not (own_ws.root.parent / "escape.png").exists()
    assert metrics(at)["Readable images"] == "1"  # the page now shows the new collection


def test_non_image_upload_is_refused_with_a_reason(own_ws):
    at = run_page("collection")
    at.file_uploader[0].upload("notes.jpg", b"just some text", "image/jpeg")
    button(at, "Add to collection").click().run()
    assert not at.exception
    assert any("notes.jpg" in e.value and "not an image" in e.value for e in at.error)
    assert not list(own_ws.uploads_dir().rglob("*"))


def test_scanning_a_folder_without_images_says_so(own_ws, tmp_path):
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pictures")
    at = run_page("collection")
    at.text_input[0].set_value(str(empty))
    button(at, "Scan this folder").click().run()
    assert not at.exception
    assert any("No readable images" in e.value for e in at.error)
    at.text_input[0].set_value(str(tmp_path / "missing"))
    button(at, "Scan this folder").click().run()
    assert any("Folder not found" in e.value for e in at.error)


# -- train --------------------------------------------------------------------------------------
def test_train_lists_runs_and_refuses_a_missing_folder(own_ws, tmp_path):
    at = run_page("train")
    assert "demo" in set(at.dataframe[0].value["model"])
    # the runs' loss curves: whole epochs; a log axis (ticks labelled as values, 0.02, not "2")
    # only where the losses span a decade
    spec = at.get("plotly_chart")[0].proto.spec.replace(" ", "")
    assert '"dtick":1' in spec and ('"type":"log"' in spec) == ('"tickformat":".2~g"' in spec)
    from fext.ui.common import spans_a_decade
    assert not spans_a_decade(pd.Series([0.37, 0.35, 0.34]))
    assert spans_a_decade(pd.Series([0.5, 0.1, 0.04, float("nan")]))
    widget(at.text_input, "Image folder").set_value(str(tmp_path / "missing"))
    button(at, "Start training").click().run()
    assert not at.exception
    assert any("Folder not found" in e.value for e in at.error)


def test_train_starts_one_build_job_and_shows_it_live(own_ws, monkeypatch, fake_jobs):
    from fext.registry import open_record

    calls = []

    def start(ws, command, name, args):
        calls.append((command, name, [str(a) for a in args]))
        return fake_jobs(ws, command, name, {"stage": "train", "done": 6, "total": 20, "info": {
            "epoch": 3, "loss": 0.05}, "history": [{"epoch": 1, "loss": 0.09, "val_loss": 0.1},
                                                  {"epoch": 2, "loss": 0.07, "val_loss": 0.08}]})

    monkeypatch.setattr("fext.jobs.start", start)
    images = open_record(own_ws, "demo").images
    at = run_page("train")
    widget(at.text_input, "Model name").set_value("shapes-2")
    widget(at.select_slider, "Image size").set_value(32)
    widget(at.selectbox, "Sub-folders are").set_value("albums")
    button(at, "Start training").click().run()
    assert not at.exception, at.exception
    assert len(calls) == 1
    command, name, args = calls[0]
    assert (command, name) == ("build", "shapes-2")
    opts = dict(zip(args[::2], args[1::2]))
    assert opts["--images"] == images and opts["--image-size"] == "32"
    assert opts["--folders"] == "albums"
    assert {"--preset", "--latent-dim", "--epochs", "--batch-size", "--learning-rate", "--fit",
            "--patience"} <= set(opts)
    # the page now shows the job: progress bar, live curves, a cancel button
    assert "Running: build shapes-2" in texts(at)
    assert at.get("progress") and at.get("plotly_chart")
    assert '"dtick":1' in at.get("plotly_chart")[0].proto.spec.replace(" ", "")  # whole epochs
    # a reload (a fresh session) shows the same job and starts nothing new
    again = run_page("train")
    assert "Running: build shapes-2" in texts(again) and len(calls) == 1
    button(again, "Cancel").click().run()
    assert not again.exception
    from fext import jobs
    assert jobs.active(own_ws) is None


# -- reconstruction, map, anomalies, features ---------------------------------------------------
def test_reconstruction_shows_metrics_pairs_and_worst(on_demo):
    at = run_page("reconstruction")
    m = metrics(at)
    assert {"Test loss (MSE)", "Test PSNR", "Test SSIM"} <= set(m)
    assert set(at.dataframe[0].value["split"]) == {"train", "val", "test"}
    captions = image_captions(at)
    assert len(captions) >= 9 and all("PSNR" in c for c in captions)
    assert "Worst reconstructed" in texts(at)


def test_reconstruction_of_a_large_collection_reads_a_sample_and_says_so(on_demo, monkeypatch):
    from fext import evaluate

    monkeypatch.setattr(evaluate, "PAGE_SAMPLE", 10)
    at = run_page("reconstruction")
    assert f"Among a sample of 10 of the {READABLE} images" in texts(at)
    assert len(image_captions(at)) >= 9


def test_the_map_of_a_folder_without_labels_starts_coloured_by_anomaly(own_ws):
    """Every point would be "(none)" by label: the map opens on the anomaly score instead."""
    items_path = next((own_ws.root / "index" / "demo").glob("v-*/items.csv"))
    items = pd.read_csv(items_path, keep_default_na=False)
    items.assign(label="").to_csv(items_path, index=False)
    at = run_page("map")
    assert not at.exception and at.radio[0].value.startswith("anomaly")


def test_map_colours_by_every_option(on_demo):
    at = run_page("map")
    assert at.get("bidi_component") and "anomaly (odd ones out)" in at.radio[0].options
    assert at.radio[0].value == "label"  # three labels: the most informative colour
    for option in at.radio[0].options[1:]:  # folder and each anomaly score
        at.radio[0].set_value(option).run()
        assert not at.exception
    assert "Click a point" in texts(at)


def test_the_map_mounts_for_an_extraction_folder_whose_name_holds_a_double_underscore():
    """mkdtemp names extractions 'v-<time>-<random>', and the random part may hold '__', which
    Streamlit refuses in a component's key: the map must mount whatever the folder is called."""
    def page():
        from fext.ui.scatter import scatter
        scatter(base="/fext/x", plotly="/plotly.js", colour="label", key="map-v-20261203-x__y_")

    at = AppTest.from_function(page, default_timeout=60).run()
    assert not at.exception and at.get("bidi_component")


def test_anomaly_threshold_counts_images(on_demo):
    at = run_page("anomalies")
    threshold = widget(at.slider, "Threshold")
    threshold.set_value(threshold.min).run()
    assert metrics(at)["Above threshold"] == str(READABLE)
    assert len(image_captions(at)) == 18 and image_captions(at)[0].startswith("#1")
    at.radio[0].set_value("reconstruction").run()
    assert not at.exception
    assert links(at)["Download ranking CSV"].endswith("/ranking/reconstruction.csv")


def test_a_ranking_made_before_the_root_contrast_reading_says_to_extract_again(own_ws):
    """An extraction from before the folder's reconstruction part was read over the root of the
    contrast still ranks as it was ranked, and the page and the CLI say how to get the current
    ranking."""
    at = run_page("anomalies")
    assert "extract again" not in texts(at)
    assert "note" not in json.loads(run_cli("anomalies", "--name", "demo", "--top", "3", "--json",
                                            workspace=own_ws.root).stdout)
    art = Artifacts.open(own_ws, "demo")
    meta = json.loads((art.dir / "meta.json").read_text())
    del meta["folder_reconstruction"]
    (art.dir / "meta.json").write_text(json.dumps(meta))
    at = run_page("anomalies")
    assert not at.exception and "extract again for the current ranking" in texts(at)
    assert f"extract --name demo --images {art.root}" in texts(at)
    said = json.loads(run_cli("anomalies", "--name", "demo", "--top", "3", "--json",
                              workspace=own_ws.root).stdout)
    assert f"extract --name demo --images {art.root}" in said["note"]
    at.radio[0].set_value("reconstruction").run()  # the relative errors it was ranked by
    assert not at.exception and metrics(at)["Highest score"] == (
        f"{Artifacts.open(own_ws, 'demo').reconstruction_errors().max():.4f}")


def _set_calibration(ws, **changes) -> None:
    """Rewrite the duplicate calibration stored with the workspace's extraction."""
    meta_path = next((ws.root / "index" / "demo").glob("v-*/meta.json"))
    meta = json.loads(meta_path.read_text())
    meta["duplicates"].update(changes)
    meta_path.write_text(json.dumps(meta))


def test_duplicates_page_groups_at_the_calibrated_threshold_and_regroups(own_ws):
    _set_calibration(own_ws, trusted=True)
    at = run_page("duplicates")
    assert "Suggested threshold" in texts(at) and "edited copies" in texts(at)
    threshold = widget(at.slider, "Similarity threshold")
    threshold.set_value(threshold.min).run()  # the loosest threshold: the shapes group up
    assert not at.exception
    m = metrics(at)
    assert int(m["Duplicate groups"]) > 0 and int(m["Files that could be removed"]) > 0
    assert "Group 1" in texts(at)
    assert "/duplicates.csv?threshold=" in links(at)["Download suggested removals (CSV)"]
    threshold.set_value(1.0).run()
    assert not at.exception
    assert int(metrics(at)["Files that could be removed"]) < int(m["Files that could be removed"])


def test_duplicates_page_says_when_it_cannot_tell_and_suggests_no_near_copies(own_ws):
    """The tiny shapes collection is all look-alikes: the page says so, starts at identical
    files only, and the slider still lets the user look."""
    _set_calibration(own_ws, trusted=False, text="not trusted: images here look alike")
    at = run_page("duplicates")
    assert not at.exception
    assert "No near-duplicate removals suggested" in texts(at) and "look alike" in texts(at)
    threshold = widget(at.slider, "Similarity threshold")
    assert threshold.value == 1.0
    exact_only = int(metrics(at)["Files that could be removed"])
    assert links(at)["Download suggested removals (CSV)"].endswith("?threshold=auto")
    threshold.set_value(threshold.min).run()
    assert not at.exception and int(metrics(at)["Files that could be removed"]) > exact_only


def test_features_page_offers_the_csv(on_demo):
    at = run_page("features")
    m = metrics(at)
    assert m["Images"] == str(READABLE) and m["Vector size"] == str(DIM)
    assert list(at.dataframe[0].value.columns[:3]) == ["path", "label", "f0"]
    assert links(at)["Download features CSV"].endswith("/features.csv")


# -- search -------------------------------------------------------------------------------------
def test_search_by_upload_shows_k_results(on_demo):
    at = run_page("search")
    at.file_uploader[0].upload("query.png", png(shape("blue", 3)), "image/png")
    widget(at.slider, "Results").set_value(5)
    at.run()
    assert not at.exception
    assert "5 results" in texts(at)
    results = [c for c in image_captions(at) if c.startswith("#")]
    assert len(results) == 5 and results[0].startswith("#1 · ")
    assert "blue/blue_003.png" in results[0]  # the same picture is in the collection


def test_search_by_a_collection_image_finds_itself_first(on_demo):
    at = run_page("search")
    at.radio[0].set_value("Pick from the collection").run()
    picker = widget(at.selectbox, "Image")
    picker.set_value("green/green_005.png").run()
    assert not at.exception
    results = [c for c in image_captions(at) if c.startswith("#")]
    assert len(results) == 12 and "green/green_005.png" in results[0]
    assert "same picture" in results[0]  # the same file: marked, and said above the grid
    marked = sum("same picture" in c for c in results)  # others may be: a square on a flat
    # background moved a little is, pixel for pixel, what a crop and a shift of it would give
    assert f"**{marked} show{'s' if marked == 1 else ''} the query's own picture**" in texts(at)


def test_search_refuses_a_non_image_upload(on_demo):
    at = run_page("search")
    at.file_uploader[0].upload("notes.jpg", b"hello, I am text", "image/jpeg")
    at.run()
    assert not at.exception
    assert any("cannot be used as a query image" in e.value for e in at.error)


def test_search_refuses_a_decompression_bomb(on_demo):
    at = run_page("search")
    at.file_uploader[0].upload("huge.png", bomb_png(), "image/png")
    at.run()
    assert not at.exception
    assert any("too large" in e.value for e in at.error)


def test_warm_search_reuses_the_loaded_model_and_index(on_demo, monkeypatch):
    """Each new query is answered from the model and index the page loaded once (speed itself
    is measured in bench/search.py, not asserted here)."""
    from fext.search import Searcher

    opened = []
    real_open = Searcher.open.__func__
    monkeypatch.setattr(Searcher, "open", classmethod(
        lambda cls, *a, **k: opened.append(a) or real_open(cls, *a, **k)))
    from fext.ui.common import searcher
    searcher.clear()
    at = run_page("search")
    for i in range(3):
        at.file_uploader[0].upload(f"q{i}.png", png(shape("green", 7 + i)), "image/png")
        at.run()
        assert not at.exception
        assert any(re.search(r"results\*\* in \d+ ms", c.value) for c in at.caption)
    assert len(opened) == 1, opened


# -- before there is anything to show -----------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_pages_before_any_model_say_what_to_do(empty_ws, page):
    at = run_page(page)
    assert not at.exception, page
    assert at.title
    words = texts(at)
    assert "Train" in words or "Choose a folder" in words, (page, words)
    assert not (empty_ws.root / "jobs").exists()  # no demo preparation without demo images


def test_first_start_prepares_the_demo_once_and_shows_progress(tmp_path, monkeypatch, fake_jobs):
    from fext import registry
    from fext.workspace import Workspace

    monkeypatch.setenv("FEXT_WORKSPACE", str(tmp_path))
    calls = []

    def start(ws, command, name, args):
        calls.append(command)
        return fake_jobs(ws, command, name, {"stage": "train", "done": 3, "total": 12})

    monkeypatch.setattr("fext.jobs.start", start)
    at = run_page("collection")
    assert not at.exception
    assert calls == ["demo"]
    assert "Preparing the demo" in texts(at) and at.get("progress")
    for page in ("collection", "search", "map"):  # reloads and other pages: no second job
        other = run_page(page)
        assert not other.exception and "Preparing the demo" in texts(other), page
    assert calls == ["demo"]
    assert registry.names(Workspace(tmp_path)) == []


def test_a_model_without_features_offers_extraction(own_ws, fake_jobs):
    shutil.rmtree(own_ws.root / "index" / "demo")
    for page in ("search", "map", "anomalies", "features"):
        at = run_page(page)
        assert not at.exception, page
        assert "has no features yet" in texts(at) and "Extract features now" in texts(at), page
    fake_jobs(own_ws, "extract", "demo", {"stage": "encode", "done": 10, "total": 36})
    at = run_page("search")
    assert "Extraction running" in texts(at) and at.get("progress")


def test_job_status_is_read_from_disk(own_ws, fake_jobs):
    """The progress files a real job writes are what the page shows (a reload changes nothing)."""
    job = fake_jobs(own_ws, "build", "other", {"stage": "encode", "done": 5, "total": 10})
    spec = json.loads((job.dir / "job.json").read_text())
    assert spec["command"] == "build" and job.status == "running"
    at = run_page("train")
    assert "Running: build other" in texts(at)
    assert "encode: 5/10" in at.get("progress")[0].proto.text


def test_a_run_hands_freed_heap_memory_back_to_the_system():
    """What a page frees must leave the server's resident memory, or it ratchets up page by page
    (at a million images, 1.38 GB against 0.93 GB after every page, docs/BENCHMARKS.md §8)."""
    script = """
from pathlib import Path
from fext.ui.common import release_freed_memory

def rss():
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("RssAnon"))
    return int(line.split()[1]) / 1024

base = rss()
chunks = [bytes(2000) for _ in range(150_000)]   # 300 MB in small blocks, on the heap
kept = chunks[-1:]                               # one block at the top keeps the heap from shrinking
del chunks
before = rss()
release_freed_memory()
print(base, before, rss())
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    base, before, after = map(float, out.stdout.split())
    assert before - base > 250, "the freed blocks should still be resident before the release"
    assert after - base < 50


def test_the_app_starts_preparing_the_demo_when_the_server_starts(app_ws, tmp_path, monkeypatch):
    """`make app` loads app.py once, at start-up: the demo job starts then, not at the first
    page view, and only where there is no demo model yet."""
    import runpy

    started = []
    monkeypatch.setattr("fext.jobs.start", lambda ws, command, name, args: started.append(
        (ws.root, command)))
    monkeypatch.setenv("FEXT_WORKSPACE", str(tmp_path / "new"))
    runpy.run_path(str(REPO / "app.py"))
    assert started == [((tmp_path / "new").resolve(), "demo")]
    monkeypatch.setenv("FEXT_WORKSPACE", str(app_ws.root))  # it holds a model named "demo"
    runpy.run_path(str(REPO / "app.py"))
    assert len(started) == 1


def test_a_workspace_in_use_gets_no_demo_it_did_not_ask_for(trained, tmp_path, monkeypatch,
                                                            fake_jobs):
    """A user's own model, or a training of theirs still running, keeps the cores to itself:
    the demo is prepared in a newcomer's workspace only (or by `fext demo`)."""
    import runpy

    from fext.workspace import Workspace

    started = []
    monkeypatch.setattr("fext.jobs.start", lambda ws, command, name, args: started.append(
        (ws.root, command)))
    ws, name = trained  # a model of the user's own, no demo
    monkeypatch.setenv("FEXT_WORKSPACE", str(ws.root))
    runpy.run_path(str(REPO / "app.py"))
    busy = Workspace(tmp_path / "busy")  # no model yet, the first training under way
    fake_jobs(busy, "train", "mine", {"stage": "train", "done": 3, "total": 600})
    monkeypatch.setenv("FEXT_WORKSPACE", str(busy.root))
    runpy.run_path(str(REPO / "app.py"))
    assert started == [] and name != "demo"


# -- jobs, however they were started ------------------------------------------------------------
def test_a_training_typed_in_a_terminal_shows_live_and_a_kill_shows_as_failed_at_once(own_ws):
    """`python -m fext train` in a terminal: the Train page shows it running with its progress
    and epochs; SIGKILLed (no word from it), the same session's next refresh says it failed."""
    from fext import jobs
    from fext.registry import open_record

    proc = subprocess.Popen(
        [sys.executable, "-m", "fext", "train", "--images", open_record(own_ws, "demo").images,
         "--name", "from-cli", "--workspace", str(own_ws.root), "--preset", "small",
         "--image-size", "16", "--latent-dim", "8", "--batch-size", "8", "--epoch-steps", "2",
         "--held-out-copies", "32", "--epochs", "500", "--patience", "500"],  # runs until killed
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        job = until(lambda: next((j for j in jobs.all_jobs(own_ws)
                                  if len(j.progress.get("history", [])) >= 1), None),
                    600, "the training's first epoch")
        at = run_page("train")
        shown = texts(at)
        assert "Running: train from-cli" in shown, shown
        assert f"Started from the command line (process {proc.pid})" in shown
        assert "train:" in at.get("progress")[0].proto.text
        epochs = next(d.value for d in at.dataframe if "epoch" in d.value)
        assert len(epochs) >= 1 and button(at, "Cancel")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        at.run()  # what the page's one-second poll does: the same session, no reload
        assert not at.exception
        assert "Running: train from-cli" not in texts(at)
        failed = [e.value for e in at.error]
        assert any("The train from-cli job (started from the command line) failed: "
                   "interrupted: its process ended without finishing" in e for e in failed), failed
        assert job.status == "failed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_job_that_fails_shows_as_failed_at_once_with_its_reason(own_ws, tmp_path):
    from tests.helpers import run_cli

    (tmp_path / "no-images").mkdir()
    (tmp_path / "no-images" / "notes.txt").write_text("not a picture")
    at = run_page("train")
    assert not at.exception
    out = run_cli("build", "--images", str(tmp_path / "no-images"), "--name", "broken",
                  workspace=own_ws.root, check=False)
    assert out.returncode == 1
    at.run()  # the page's poll, in the session that was open when the job started and ended
    reason = out.stderr.strip().splitlines()[-1].removeprefix("error: ")
    assert "no readable images" in reason
    assert any(f"The build broken job (started from the command line) failed: {reason}" in e.value
               for e in at.error)
    assert "Running:" not in texts(at)
    recent = [m.value for m in at.markdown if "**build broken**" in m.value]  # Recent jobs
    assert len(recent) == 1 and "from the command line · :red[failed]: no readable images" \
        in recent[0]


def test_the_runs_table_names_each_models_folder_without_its_whole_path(on_demo):
    from fext.registry import open_record

    at = run_page("train")
    runs = at.dataframe[0].value
    folder = Path(open_record(on_demo, "demo").images)
    assert runs.set_index("model").loc["demo", "image folder"] == folder.name
    assert str(folder) not in runs.to_string()
