"""FEXT's commands print FEXT's lines: TensorFlow's start-up logs are kept off the terminal.

TensorFlow 2.21 writes its start-up lines from C++ before its logging is configured ("All log
messages before absl::InitializeLog() ...", the oneDNN notice), so TF_CPP_MIN_LOG_LEVEL does
not stop them. The one quiet way is to close the process's stderr while TensorFlow itself is
imported, and only then: an import hook does that the first time anything imports it, so
commands that never need it never load it. `FEXT_VERBOSE=1` (or a command's `--verbose`)
leaves everything as it was.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys

VERBOSE = "FEXT_VERBOSE"


@contextlib.contextmanager
def stderr_closed():
    """File descriptor 2 pointed at /dev/null (what C++ libraries write to), then restored."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _Quiet(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with stderr_closed():
            self.loader.exec_module(module)
        # and its Python-side warnings afterwards (they go through the "tensorflow" logger)
        logging.getLogger("tensorflow").setLevel(logging.ERROR)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the normal finders take it from here
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _Quiet(spec.loader)
        return spec


def quiet_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow with stderr closed, whenever it is first imported, unless `verbose`
    or FEXT_VERBOSE=1; nothing where it is loaded already."""
    if verbose or os.environ.get(VERBOSE) == "1":
        os.environ[VERBOSE] = "1"  # background jobs this process starts stay verbose too
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules and not any(
            isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())
