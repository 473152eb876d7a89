"""Progress reporting shared by the CLI (a bar on stderr) and the app (a JSON file it polls).

Library functions take a `progress` callable: ``progress(stage, done, total, **info)``. Passing
None is fine; `report` turns it into a no-op.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Protocol

from .workspace import write_json


class ProgressFn(Protocol):
    def __call__(self, stage: str, done: int, total: int, **info) -> None: ...


def report(progress: ProgressFn | None) -> ProgressFn:
    return progress or (lambda stage, done, total, **info: None)


class Reporter:
    """Progress sink: a tqdm bar per stage on stderr and/or a JSON status file (throttled)."""

    def __init__(self, json_path: str | Path | None = None, bar: bool = True,
                 min_interval: float = 0.3):
        self.json_path = Path(json_path) if json_path else None
        self.bar_enabled = bar and sys.stderr.isatty()
        self.min_interval = min_interval
        self.state: dict = {"pid": os.getpid(), "status": "running", "started": time.time(),
                            "stage": "", "done": 0, "total": 0, "info": {}, "history": []}
        self._bar = None
        self._stage = None
        self._last_write = 0.0
        self._last_line = 0.0
        self._flush(force=True)

    def __call__(self, stage: str, done: int, total: int, **info) -> None:
        new_stage = stage != self._stage
        if new_stage:
            self._close_bar()
            self._stage = stage
        self.state.update(stage=stage, done=int(done), total=int(total), updated=time.time())
        if "epoch_logs" in info:  # per-epoch metrics accumulate for live curves
            self.state["history"].append(info.pop("epoch_logs"))
        self.state["info"] = info
        self._draw(stage, done, total, info)
        self._flush(force=new_stage or done >= total)

    def finish(self, status: str = "done", **result) -> None:
        self._close_bar()
        self.state.update(status=status, finished=time.time(), result=result)
        self._flush(force=True)

    def _draw(self, stage, done, total, info):
        if self.bar_enabled:
            if self._bar is None:
                from tqdm import tqdm
                self._bar = tqdm(total=total, desc=stage, unit="", file=sys.stderr, leave=True)
            self._bar.total = total
            self._bar.n = done
            if info:
                self._bar.set_postfix({k: v for k, v in info.items() if isinstance(v, (int, float, str))},
                                      refresh=False)
            self._bar.refresh()
        else:
            now = time.time()
            if done >= total or now - self._last_line > 5:
                self._last_line = now
                extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in info.items() if isinstance(v, (int, float, str)))
                print(f"[{stage}] {done}/{total} {extra}".rstrip(), file=sys.stderr, flush=True)

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _flush(self, force: bool = False) -> None:
        if not self.json_path:
            return
        now = time.time()
        if force or now - self._last_write >= self.min_interval:
            self._last_write = now
            write_json(self.json_path, self.state)

