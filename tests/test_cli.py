"""The CLI end to end, as a script would use it, on labelled images mixed with broken files."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.corpus import make_awkward, make_shapes
from tests.helpers import run_cli

COMMANDS = ["train", "extract", "search", "anomalies", "export", "evaluate", "project", "scan", "demo"]


@pytest.fixture(scope="module")
def cli_ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    images = root / "photos"
    make_shapes(images, per_label=10)
    good, bad = make_awkward(images / "misc")
    ws = root / "ws"
    out = run_cli("train", "--images", str(images), "--name", "cli", "--preset", "small",
                  "--image-size", "16", "--latent-dim", "8", "--epochs", "2", "--epoch-steps", "4",
                  "--batch-size", "16", "--held-out-copies", "32", "--json", workspace=ws)
    run_cli("extract", "--name", "cli", workspace=ws)  # every test sees an extraction, in any order
    return ws, images, json.loads(out.stdout), 30 + len(good), len(bad)


def test_help_on_every_command():
    for c in COMMANDS:
        assert "usage:" in run_cli(c, "--help").stdout


@pytest.mark.parametrize("args,message", [
    (["train", "--images", ".", "--name", "x", "--preset", "huge"],
     "argument --preset: invalid choice: 'huge' (choose from 'small', 'medium', 'large', 'vgg16')"),
    (["anomalies", "--name", "x", "--top", "abc"], "argument --top: invalid int value: 'abc'"),
    ([], "a command is needed: one of train, build, extract"),
])
def test_usage_mistakes_are_one_error_line_and_status_1(args, message):
    proc = run_cli(*args, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and message in proc.stderr
    assert "usage:" not in proc.stderr


def test_the_console_script_runs_as_its_own_process(tmp_path):
    """The real `python -m fext` process: its status and one error line (the other CLI tests
    call fext.cli.main in this process)."""
    proc = run_cli("evaluate", "--name", "nope", workspace=tmp_path, check=False, subprocess_=True)
    assert proc.returncode == 1 and "no trained model" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "usage:" in run_cli("train", "--help", subprocess_=True).stdout
    # the program is named as the user typed it: the installed `fext` command
    fext = Path(sys.executable).parent / "fext"
    out = subprocess.run([str(fext), "train", "--preset", "huge"], capture_output=True, text=True)
    assert out.returncode == 1 and "(see: fext train --help)" in out.stderr


def test_train_reports_metrics_and_skipped_files(cli_ws):
    ws, _, result, readable, broken = cli_ws
    assert result["skipped"] == broken
    assert sum(result["images"].values()) == readable
    assert result["splits"]["val"]["loss"] > 0


def test_extract_search_anomalies_export_evaluate_project(cli_ws, tmp_path):
    ws, images, _, readable, _ = cli_ws
    meta = json.loads(run_cli("extract", "--name", "cli", "--json", workspace=ws).stdout)
    assert meta["count"] == readable

    query = images / "blue" / "blue_004.png"
    res = json.loads(run_cli("search", "--name", "cli", str(query), "-k", "5", "--json",
                             workspace=ws).stdout)
    assert res["query"] == str(query)
    assert res["results"][0]["path"] == "blue/blue_004.png" and res["results"][0]["rank"] == 1
    assert res["results"][0]["score"] == max(r["score"] for r in res["results"])
    assert len(res["results"]) == 5

    anom = json.loads(run_cli("anomalies", "--name", "cli", "--top", "0", "--json",
                              workspace=ws).stdout)["results"]
    assert len(anom) == readable
    assert [a["score"] for a in anom] == sorted((a["score"] for a in anom), reverse=True)

    out = tmp_path / "features.csv"
    run_cli("export", "--name", "cli", "--csv", str(out), workspace=ws)
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["path", "label"] + [f"f{i}" for i in range(8)]
    assert len(rows) == readable + 1 and all(len(r) == 10 for r in rows)
    assert "misc/names/ünïcödé ñame with spaces.png" in {r[0] for r in rows}

    ev = json.loads(run_cli("evaluate", "--name", "cli", "--json", workspace=ws).stdout)
    assert set(ev["reconstruction"]) == {"train", "val", "test"}
    assert 0 < ev["reconstruction"]["test"]["ssim"] <= 1

    proj = json.loads(run_cli("project", "--name", "cli", "--json", workspace=ws).stdout)
    assert proj["points"] == readable


def test_scan_lists_skipped_files_with_reasons(cli_ws):
    ws, images, _, readable, broken = cli_ws
    s = json.loads(run_cli("scan", "--images", str(images), "--image-size", "16", "--json",
                           workspace=ws).stdout)
    assert s["readable"] == readable and s["skipped"] == broken
    reasons = {f["path"]: f["reason"] for f in s["skipped_files"]}
    assert "too large" in reasons["misc/broken/bomb.png"]
    assert "empty" in reasons["misc/broken/empty.jpg"]


@pytest.mark.parametrize("args,message", [
    (["search", "--name", "nope", "x.png"], "query image not found"),
    (["anomalies", "--name", "nope"], "no trained model named 'nope'"),
    (["evaluate", "--name", "nope"], "no trained model"),
    (["train", "--images", "/does/not/exist", "--name", "x"], "image folder not found"),
    (["train", "--images", ".", "--name", "../../etc"], "invalid name"),
])
def test_errors_are_one_clear_line_and_exit_1(tmp_path, args, message):
    proc = run_cli(*args, workspace=tmp_path, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_workspace_from_environment(cli_ws, monkeypatch):
    monkeypatch.setenv("FEXT_WORKSPACE", str(cli_ws[0]))
    proc = run_cli("anomalies", "--name", "cli", "--top", "3", "--json", check=False)
    assert proc.returncode == 0 and len(json.loads(proc.stdout)["results"]) == 3


def test_an_unknown_model_is_told_with_the_models_there_are(cli_ws):
    """Not "run extract" for a model that does not exist: the advice must work."""
    ws = cli_ws[0]
    for command in (["anomalies"], ["duplicates"], ["project"]):
        proc = run_cli(*command, "--name", "nope", workspace=ws, check=False)
        assert proc.returncode == 1 and "the models there: cli" in proc.stderr, proc.stderr
        assert "fext extract" not in proc.stderr


def test_commands_print_only_fexts_lines_unless_verbose(tmp_path):
    """TensorFlow's start-up lines stay off the terminal (fext/quiet.py); --verbose brings them
    back, and with them back a whole build (training, read-out, evaluation, extraction,
    calibration) shows no tf.function retracing warning: retracing is avoided, not hidden."""
    make_shapes(tmp_path / "images", per_label=6)
    build = ["build", "--images", str(tmp_path / "images"), "--name", "q", "--preset", "small",
             "--image-size", "16", "--latent-dim", "8", "--epochs", "2", "--epoch-steps", "3",
             "--batch-size", "8", "--held-out-copies", "32", "--fresh"]
    quiet = run_cli(*build, workspace=tmp_path / "ws", subprocess_=True)
    assert "oneDNN" not in quiet.stderr and "absl" not in quiet.stderr
    assert "WARNING" not in quiet.stderr, quiet.stderr
    assert "epoch 1 of 2" in quiet.stderr  # FEXT's own lines are there
    loud = run_cli(*build, "--verbose", workspace=tmp_path / "ws", subprocess_=True)
    assert "oneDNN" in loud.stderr and "epoch 1 of 2" in loud.stderr
    assert "retracing" not in loud.stderr, loud.stderr
