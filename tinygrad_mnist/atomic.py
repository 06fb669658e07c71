"""write_atomically: a file appears whole or not at all, for every writer in the package.

The bytes go to a temporary file beside the target (same folder, so the same file system), are
flushed to disk, and only then does os.replace point the name at them: a crash, a kill, Ctrl-C
or a full disk leaves the previous file as it was. The temporary file is removed on any failure
Python sees; ones a killed process left behind (`.NAME.xxxxxxxx.tmp`) are removed first.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path


def write_atomically(path, write):
    """Call `write(file)` on a new binary file, then make it `path` in one step; returns the Path.
    Makes missing folders. OSErrors are raised as the OS reported them (callers add their hints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the name points at them
        os.replace(temporary, path)
    finally:
        if temporary is not None and os.path.lexists(temporary):  # also on Ctrl-C, which is re-raised
            os.unlink(temporary)
    return path


def _remove_stale_temporaries(path):
    pattern = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}\.tmp")  # tempfile.mkstemp's names
    try:
        for entry in os.scandir(path.parent):
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
    except OSError:
        pass  # a leftover we cannot remove does no harm; the write itself reports real problems
