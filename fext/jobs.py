"""Long work as processes of the CLI, each a folder of the workspace's jobs/ (job.json, progress.json).

One notion of a job, whoever started it. The app starts one in the background
(`start`: `python -m fext <command> ... --progress-file F`, its output in log.txt); a long command
typed in a terminal records itself (`register`, from fext.cli.main). Either way job.json says
what runs (command, model name, arguments, pid, where it was started) and the command's
Reporter (fext.progress) writes progress.json, so the app shows both alike, live, and a page
reload or a second browser tab neither kills nor duplicates a job. A job whose process is gone
without writing how it ended (SIGKILL, out of memory) reads as failed. At most one job runs per
model name: the command itself holds the model's lock, and `start` refuses a second one up
front with a clear message.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import BusyError
from .workspace import Workspace, read_json, write_json

KEEP = 100  # job folders kept; older finished ones are removed as new jobs start
ORIGINS = {"app": "the app", "cli": "the command line"}


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of process `pid`, from /proc; None where
    there is no such file (no process, or no /proc). The start time tells a job's process from
    a later one that happens to get the same pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Job:
    id: str
    dir: Path

    @property
    def spec(self) -> dict:
        return read_json(self.dir / "job.json", {})

    @property
    def progress(self) -> dict:
        return read_json(self.dir / "progress.json", {})

    @property
    def pid(self) -> int:
        return int(self.spec.get("pid", 0))

    @property
    def origin(self) -> str:
        """Who started it, in words: the app, or the command line (older records: the app)."""
        return ORIGINS.get(self.spec.get("origin", "app"), "the app")

    def alive(self) -> bool:
        """Whether the job's own process still runs (not a zombie, not a later process that
        reuses its pid). Reaps it if it is this process's child, keeping its exit status."""
        spec = self.spec
        pid = int(spec.get("pid", 0))
        if pid <= 0:
            return False
        if self._reaped(spec, pid):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists, under another user
        stat = _proc_stat(pid)
        if stat is None:
            return True  # no /proc here: the pid exists, which is all there is to know
        state, started = stat
        if state in ("Z", "X"):  # ended since the first look: reap it now, keeping its status
            self._reaped(spec, pid)
            return False
        return spec.get("pid_start") in (None, started)

    def _reaped(self, spec: dict, pid: int) -> bool:
        """Whether `pid` is this process's child and has ended; if so, its exit status is
        kept in job.json (what `error` reports) and the zombie is gone."""
        if pid == os.getpid():
            return False
        try:
            waited, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return False
        if waited != pid:
            return False
        write_json(self.dir / "job.json", {**spec, "returncode": os.waitstatus_to_exitcode(status)})
        return True

    @property
    def status(self) -> str:
        """running, done, failed or cancelled (a process that died silently counts as failed)."""
        state = self.progress.get("status")
        if state in ("done", "failed", "cancelled"):
            return state
        if self.alive():
            return "running"
        return "cancelled" if self.spec.get("cancelled") else "failed"

    def error(self) -> str:
        """Why it failed, in one line: the error the command reported, else the last `error:`
        line of its log, else how its process ended without a word."""
        result = self.progress.get("result") or {}
        if result.get("error"):
            return result["error"]
        log = self.dir / "log.txt"
        lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
        errors = [ln for ln in lines if ln.startswith("error:")]
        if errors:
            return errors[-1]
        code = self.spec.get("returncode")
        how = (f"killed by {signal.Signals(-code).name}" if isinstance(code, int) and code < 0
               and -code in signal.valid_signals() else
               f"exit status {code}" if isinstance(code, int) else
               "killed, out of memory, or the machine stopped")
        last = f"; its last output: {lines[-1]}" if lines else ""
        return f"interrupted: its process ended without finishing ({how}){last}"

    def cancel(self) -> None:
        """Mark it cancelled and stop it: an app job with its whole process group (its own
        session), a command-line job by its pid alone (its group is the user's shell's)."""
        spec = self.spec
        alive = self.alive()
        write_json(self.dir / "job.json", {**spec, "cancelled": True})
        if not alive:
            return
        try:
            if spec.get("origin", "app") == "app":
                os.killpg(self.pid, signal.SIGTERM)
            else:
                os.kill(self.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


def _new(ws: Workspace) -> Job:
    """A new job's folder (older finished ones beyond KEEP removed); job.json comes once its
    process is known."""
    # sortable by start: two jobs started within one second keep their order (all_jobs)
    now = time.time_ns()
    job_id = (time.strftime("%Y%m%d-%H%M%S", time.localtime(now // 10 ** 9))
              + f"-{now % 10 ** 9:09d}-{uuid.uuid4().hex[:4]}")
    job_dir = ws.jobs_dir() / job_id
    job_dir.mkdir(parents=True)
    for old in all_jobs(ws)[KEEP:]:
        if old.status != "running":
            shutil.rmtree(old.dir, ignore_errors=True)
    return Job(job_id, job_dir)


def _record(job: Job, command: str, name: str | None, args: list[str], pid: int,
            origin: str) -> None:
    stat = _proc_stat(pid)
    write_json(job.dir / "job.json", {
        "id": job.id, "command": command, "name": name, "args": [str(a) for a in args],
        "pid": pid, "pid_start": stat[1] if stat else None, "origin": origin,
        "started": time.time()})


def start(ws: Workspace, command: str, name: str | None, args: list[str]) -> Job:
    """Start `python -m fext command --workspace WS [--name NAME] args...` in the background."""
    if name:
        running = active(ws, name)
        if running is not None:
            raise BusyError(f"a {running.spec.get('command')} job for {name!r} is already "
                            f"running (started from {running.origin}); wait for it or cancel it")
        if ws.is_locked(name):
            raise BusyError(f"model {name!r} is busy with another job (started elsewhere)")
    job = _new(ws)
    argv = [sys.executable, "-m", "fext", command, "--workspace", str(ws.root),
            "--progress-file", str(job.dir / "progress.json")]
    if name:
        argv += ["--name", name]
    argv += [str(a) for a in args]
    with open(job.dir / "log.txt", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=str(Path(__file__).resolve().parent.parent))
    _record(job, command, name, argv[3:], proc.pid, "app")
    return job


def register(ws: Workspace, command: str, name: str | None, args: list[str]) -> Job:
    """Record the command this process runs (typed in a terminal) as a job of `ws`; its
    Reporter then writes the job's progress.json, and the app shows it as it shows its own."""
    job = _new(ws)
    _record(job, command, name, args, os.getpid(), "cli")
    return job


def all_jobs(ws: Workspace) -> list[Job]:
    """Every recorded job, the most recent first."""
    base = ws.jobs_dir()
    if not base.is_dir():
        return []
    return [Job(p.name, p) for p in sorted(base.iterdir(), reverse=True) if (p / "job.json").is_file()]


def active(ws: Workspace, name: str | None = None, command: str | None = None) -> Job | None:
    """The running job for model `name` (and command), if any."""
    for job in all_jobs(ws):
        spec = job.spec
        if (name is None or spec.get("name") == name) and \
                (command is None or spec.get("command") == command) and job.status == "running":
            return job
    return None


def latest(ws: Workspace, name: str | None = None, command: str | None = None) -> Job | None:
    for job in all_jobs(ws):
        spec = job.spec
        if (name is None or spec.get("name") == name) and \
                (command is None or spec.get("command") == command):
            return job
    return None
