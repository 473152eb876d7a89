"""Jobs (fext/jobs.py): one notion of a job whoever started it. A long command typed in a
terminal records itself as the app's jobs do; a job whose process is gone without saying how
it ended reads as failed, with why, at once; a cancel stops only the job's own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fext import jobs
from fext.workspace import Workspace, write_json
from tests.helpers import REPO, run_cli, until


def fake(ws: Workspace, pid: int, progress: dict | None = None, job_id: str = "20260101-000000-aaaaaa",
         **spec) -> jobs.Job:
    """A job folder as `start` or `register` leave it, for process `pid`."""
    d = ws.jobs_dir() / job_id
    d.mkdir(parents=True)
    write_json(d / "job.json", {"id": job_id, "command": "train", "name": "m", "args": [],
                                "pid": pid, "started": time.time(), **spec})
    if progress is not None:
        write_json(d / "progress.json", progress)
    return jobs.Job(job_id, d)


@pytest.fixture
def sleeper():
    """A harmless process in its own session, SIGKILLed and reaped at the end."""
    procs = []

    def make():
        proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
        procs.append(proc)
        return proc

    yield make
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def test_long_commands_typed_in_a_terminal_record_themselves_as_jobs(trained, tmp_path):
    ws, name = trained
    (tmp_path / "empty").mkdir()
    assert jobs.all_jobs(ws) == []
    run_cli("extract", "--name", name, workspace=ws.root)
    failed = run_cli("train", "--images", str(tmp_path / "empty"), "--name", "m",
                     workspace=ws.root, check=False)
    assert failed.returncode == 1
    bad, done = jobs.all_jobs(ws)  # the most recent first
    assert done.spec["command"] == "extract" and done.spec["origin"] == "cli"
    assert done.origin == "the command line" and done.status == "done"
    assert done.spec["pid"] == os.getpid() and "--workspace" in done.spec["args"]
    assert done.spec["name"] == name and done.progress["stage"]
    assert bad.spec["name"] == "m" and bad.status == "failed"
    assert bad.error() == failed.stderr.strip().splitlines()[-1].removeprefix("error: ")
    # a quick command is no job, nor a command the app started (it records its own)
    run_cli("search", "--name", "m", "q.png", workspace=ws.root, check=False)
    run_cli("train", "--images", str(tmp_path / "empty"), "--name", "m", "--progress-file",
            str(tmp_path / "p.json"), workspace=ws.root, check=False)
    assert len(jobs.all_jobs(ws)) == 2
    assert json.loads((tmp_path / "p.json").read_text())["status"] == "failed"


def test_a_killed_job_reads_as_failed_with_why(tmp_path, sleeper):
    """SIGKILL leaves no word from the job: the missing process says it."""
    ws = Workspace(tmp_path)
    proc = sleeper()
    job = fake(ws, proc.pid, {"status": "running", "stage": "train"}, origin="cli",
               pid_start=jobs._proc_stat(proc.pid)[1])
    assert job.status == "running"
    os.kill(proc.pid, signal.SIGKILL)
    until(lambda: job.status == "failed", 60, "the killed job to read as failed")
    assert job.error().startswith("interrupted: its process ended without finishing")


def test_an_app_job_says_why_it_failed_or_by_which_signal_it_was_killed(tmp_path):
    """The app's jobs are its children: a failure is the command's own error line, and
    reaping a killed one tells how its process ended."""
    ws = Workspace(tmp_path)
    job = jobs.start(ws, "train", "m", ["--images", str(tmp_path / "missing")])
    assert job.origin == "the app"
    until(lambda: job.status != "running", 120, "the job to end")
    assert job.status == "failed" and "image folder not found" in job.error()
    pid = os.posix_spawnp("sleep", ["sleep", "300"], os.environ)  # a child, as the app's are
    try:
        killed = fake(ws, pid, {"status": "running"}, job_id="20260101-000001-bbbbbb")
        assert killed.status == "running"
        os.kill(pid, signal.SIGKILL)
        until(lambda: killed.status == "failed", 60, "the killed job to read as failed")
        assert "killed by SIGKILL" in killed.error()
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_a_child_that_ends_between_two_looks_still_says_which_signal_killed_it(tmp_path,
                                                                               monkeypatch):
    """The first look (waitpid) finds it running, the second (/proc) finds a zombie: the job
    reads as failed and still keeps how its process ended."""
    ws = Workspace(tmp_path)
    pid = os.posix_spawnp("sleep", ["sleep", "300"], os.environ)
    os.kill(pid, signal.SIGKILL)
    until(lambda: jobs._proc_stat(pid)[0] == "Z", 30, "the child to become a zombie")
    job = fake(ws, pid, {"status": "running"})
    real, looks = os.waitpid, []

    def first_look_too_early(p, options):
        looks.append(p)
        return (0, 0) if len(looks) == 1 else real(p, options)

    monkeypatch.setattr(os, "waitpid", first_look_too_early)
    assert job.status == "failed" and len(looks) == 2
    assert "killed by SIGKILL" in job.error()


def test_a_pid_taken_by_a_later_process_is_not_the_job(tmp_path):
    ws = Workspace(tmp_path)
    start = jobs._proc_stat(os.getpid())[1]
    job = fake(ws, os.getpid(), {"status": "running"}, pid_start=start + 1)
    assert not job.alive() and job.status == "failed"
    assert fake(ws, os.getpid(), {"status": "running"}, job_id="20260101-000001-cccccc",
                pid_start=start).status == "running"


def test_cancelling_a_command_line_job_stops_its_process(tmp_path):
    """A command typed in a shell is not its process group's leader when a script runs it:
    the cancel signals the job's own process, nothing else of the user's."""
    ws = Workspace(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], cwd=REPO)
    try:
        job = fake(ws, child.pid, {"status": "running"}, origin="cli",
                   pid_start=jobs._proc_stat(child.pid)[1])
        job.cancel()
        assert child.wait(timeout=60) == -signal.SIGTERM
        assert job.status == "cancelled"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_old_finished_jobs_make_room_for_new_ones(tmp_path, sleeper, monkeypatch):
    monkeypatch.setattr(jobs, "KEEP", 3)
    ws = Workspace(tmp_path)
    proc = sleeper()
    oldest = fake(ws, proc.pid, {"status": "running"}, job_id="20260101-000000-000000")
    for i in range(1, 5):
        fake(ws, 0, {"status": "done"}, job_id=f"20260101-00000{i}-000000")
    new = jobs.register(ws, "demo", None, ["demo"])
    ids = [j.id for j in jobs.all_jobs(ws)]
    assert ids[0] == new.id and len(ids) == 5  # three kept, the running one too, the new one
    assert oldest.id in ids and "20260101-000001-000000" not in ids
