"""write_atomically: a file appears whole or not at all, for every writer in the package.

The bytes go to a temporary file beside the target (same folder, so the same file system), are
flushed to disk, and only then does os.replace point the name at them: a crash, a kill, Ctrl-C
or a full disk leaves the previous file as it was. The temporary file is removed on any failure
Python sees; ones a killed process left behind are removed first.

The temporary name is short whatever the target's name, `.tgm-TTTTTTTT-RRRRRRRR.tmp` (T: a tag of
the target's name, R: random), so any name the file system allows (up to its NAME_MAX, usually 255
bytes) can be written: the full name plus a suffix would not fit beside a 244-byte name. The tag
ties a leftover to its target, so cleaning up never touches another file's temporary.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path


def temporary_prefix(path):
    """The start of every temporary (and lock) file name of `path`: `.tgm-` and a tag of its name."""
    return f".tgm-{hashlib.sha256(os.fsencode(Path(path).name)).hexdigest()[:8]}-"


def write_atomically(path, write):
    """Call `write(file)` on a new binary file, then make it `path` in one step; returns the Path.
    Makes missing folders. OSErrors are raised as the OS reported them (callers add their hints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
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
    pattern = re.compile(re.escape(temporary_prefix(path)) + r"[a-z0-9_]{8}\.tmp")  # tempfile.mkstemp's names
    try:
        for entry in os.scandir(path.parent):
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
    except OSError:
        pass  # a leftover we cannot remove does no harm; the write itself reports real problems
