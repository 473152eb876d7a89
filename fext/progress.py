"""Progress reporting shared by the CLI (a bar on stderr) and the app (a JSON file it polls).

Library functions take a `progress` callable: ``progress(stage, done, total, **info)``. Passing
None is fine; `report` turns it into a no-op. A training loop ends each epoch with
``epoch_logs=row`` (and ``epochs``, ``steps``, ``best``, ``stopping``: fext.loop.run_epochs),
which the Reporter turns into one line per epoch and an estimate of the time left.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from .workspace import write_json


class ProgressFn(Protocol):
    def __call__(self, stage: str, done: int, total: int, **info) -> None: ...


def report(progress: ProgressFn | None) -> ProgressFn:
    return progress or (lambda stage, done, total, **info: None)


def time_left(seconds: Sequence[float], epoch: int, epochs: int) -> float:
    """At most how many seconds the rest of a run takes after epoch `epoch` of `epochs`: the
    mean of the epochs' `seconds` so far times the epochs left. At most, because early
    stopping may end the run sooner; 0 after the last epoch (or with no epoch timed yet)."""
    left = max(epochs - epoch, 0)
    return sum(seconds) / len(seconds) * left if seconds and left else 0.0


def duration(seconds: float) -> str:
    """A duration as people say it: '42 s', '3 min 05 s', '1 h 02 min'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def epoch_line(stage: str, epoch: int, epochs: int, row: dict, steps: int | None = None,
               left: float | None = None, best: bool | None = None) -> str:
    """One epoch in one line: its place in the run, steps, the objective (loss), val_loss and
    held-out copies found (where measured), the learning rate it trained at (it falls where
    progress stalls with --lr-drop), its seconds, whether it is the best so far, and
    at most how long the epochs left take (`left`; None: nothing left, or no estimate)."""
    figures = [f"{steps} steps" if steps else None,
               f"loss {row['loss']:.5f}" if "loss" in row else None,
               f"val_loss {row['val_loss']:.5f}" if "val_loss" in row else None,
               f"val_copies {row['val_copies']:.3f}" if "val_copies" in row else None,
               f"val_accuracy {row['val_accuracy']:.4f}" if "val_accuracy" in row else None,
               f"learning rate {row['learning_rate']:.3g}" if "learning_rate" in row else None,
               f"{row['seconds']:.1f} s" if "seconds" in row else None]
    line = f"[{stage}] epoch {epoch} of {epochs}: " + ", ".join(f for f in figures if f)
    if best:
        line += "; best so far"
    if left is not None and epoch < epochs:
        more = epochs - epoch
        line += f"; at most {duration(left)} left ({more} more epoch{'s' if more != 1 else ''})"
    return line


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
        self._seconds: list[float] = []  # of this stage's epochs: the time-left estimate
        self._flush(force=True)

    def __call__(self, stage: str, done: int, total: int, **info) -> None:
        new_stage = stage != self._stage
        if new_stage:
            self._close_bar()
            self._stage = stage
            self._seconds = []
        self.state.update(stage=stage, done=int(done), total=int(total), updated=time.time())
        lines = self._epoch(stage, info) if "epoch_logs" in info else []
        self.state["info"] = info
        self._draw(stage, done, total, info)
        for line in lines:
            self._say(line)
        self._flush(force=new_stage or done >= total or bool(lines))

    def _epoch(self, stage: str, info: dict) -> list[str]:
        """An epoch's end: its row joins the history (live curves and table, with whether it
        was the best so far), the estimate of the time left is updated; returns its lines."""
        row = info.pop("epoch_logs")
        epochs, steps = info.pop("epochs", None), info.pop("steps", None)
        best, stopping = info.pop("best", None), info.pop("stopping", None)
        # a copy: the row itself belongs to the run (its history.csv)
        self.state["history"].append({**row, **({"best": best} if best is not None else {})})
        epoch = info.get("epoch", row.get("epoch"))
        if "seconds" in row:
            self._seconds.append(float(row["seconds"]))
        if not epochs or epoch is None:
            return []
        left = None if stopping or not self._seconds else time_left(self._seconds, epoch, epochs)
        self.state["estimate"] = {"stage": stage, "epoch": epoch, "epochs": epochs,
                                  "steps": steps, "seconds_left": left or 0.0,
                                  "stopping": stopping}
        lines = [epoch_line(stage, epoch, epochs, row, steps, left, best)]
        if stopping:
            lines.append(f"[{stage}] stopping early after epoch {epoch} of {epochs}: {stopping}")
        return lines

    def _say(self, line: str) -> None:
        """A line on stderr, above the bar where one is drawn (the bar is not garbled)."""
        if self._bar is not None:
            from tqdm import tqdm
            tqdm.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

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

