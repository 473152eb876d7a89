"""Long work as background processes: `python -m fext <command> ... --progress-file F`.

The app starts a job and polls its JSON progress file; the job survives page reloads and is
shared by every browser tab, because it lives on disk, not in a Streamlit session. At most one
job runs per model name (the command itself holds the model's lock, and `start` refuses a
second one up front with a clear message).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import BusyError
from .workspace import Workspace, read_json, write_json


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

    def alive(self) -> bool:
        pid = self.pid
        if pid <= 0:
            return False
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
            if waited == pid:
                return False
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        stat = Path(f"/proc/{pid}/stat")
        return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))

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
        result = self.progress.get("result") or {}
        if result.get("error"):
            return result["error"]
        log = self.dir / "log.txt"
        lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
        errors = [ln for ln in lines if ln.startswith("error:")]
        return (errors or lines or ["the job stopped without a message"])[-1]

    def cancel(self) -> None:
        spec = self.spec
        write_json(self.dir / "job.json", {**spec, "cancelled": True})
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


def start(ws: Workspace, command: str, name: str | None, args: list[str]) -> Job:
    """Start `python -m fext command --workspace WS [--name NAME] args...` in the background."""
    if name:
        running = active(ws, name)
        if running is not None:
            raise BusyError(f"a {running.spec.get('command')} job for {name!r} is already "
                               "running; wait for it or cancel it")
        if ws.is_locked(name):
            raise BusyError(f"model {name!r} is busy with another job (started elsewhere)")
    job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    job_dir = ws.jobs_dir() / job_id
    job_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "fext", command, "--workspace", str(ws.root),
            "--progress-file", str(job_dir / "progress.json")]
    if name:
        argv += ["--name", name]
    argv += [str(a) for a in args]
    with open(job_dir / "log.txt", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=str(Path(__file__).resolve().parent.parent))
    write_json(job_dir / "job.json", {"id": job_id, "command": command, "name": name,
                                      "args": argv[3:], "pid": proc.pid, "started": time.time()})
    return Job(job_id, job_dir)


def all_jobs(ws: Workspace) -> list[Job]:
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
