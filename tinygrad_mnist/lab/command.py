"""What the kit's commands share (examples/mnist.py and mnist_cnn.py, predict.py, to_torch.py):
the one guard of the paths a command writes, and the way a command stops.

check_outputs runs before any work. It refuses, in one line, an output that is one of the
command's inputs (the same file: inode, not spelling), two outputs on one path, an existing file
(unless --overwrite, or the run continues it: its --resume target, its metrics log), something
that is not a regular file (a folder, a FIFO, a device), a folder that is a file or cannot be
written (tried with a real temporary file of the very name the write will use), and a name or
path longer than the file system takes. Then it locks each output for this process: a second
command writing the same file is refused while the first lives.

The lock: fcntl.flock on a small file beside the output, `.tgm-TTTTTTTT-lock` (the tag of
atomic.temporary_prefix), holding the process id. A lock file rather than the output itself,
because every write replaces the output's inode (os.replace), and a lock on a replaced inode
guards nothing. flock dies with its process, so a killed run never blocks the next one; the lock
file is removed when the command ends (a SIGKILL can leave it: an empty-looking dot file that
the next run of that output takes over and removes).

main(work) runs a command with SIGINT (Ctrl-C) and SIGTERM handled alike from start to exit:
one line, exit status 130 or 143, never a traceback. During a run's epochs (STOP.deferring) the
first signal only asks to stop after the current step, so a checkpoint is never cut short.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
import sys
import tempfile
import weakref
from pathlib import Path

from ..atomic import temporary_prefix

SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class OutputError(ValueError):
    """An output path cannot be written as asked; the message is one line: the flag, the path,
    what is wrong and what to do. A command exits with status 2."""


def check_outputs(outputs, inputs=None, overwrite=False, continued=()):
    """Check every path a command writes, before any work, and lock each for this process.

    `outputs` maps a flag to the path it writes ({"--save": Path("run.npz"), "--plot": None};
    None: not given); `inputs` maps a flag to a path or a list of paths the command reads;
    `overwrite` lets existing files be replaced; `continued` names the outputs that may exist
    because this run continues them (its --resume target, its metrics log). Makes the outputs'
    folders. Returns the Claim holding the locks (released when it is garbage or the process
    ends); raises OutputError with one line."""
    outputs = {flag: Path(path) for flag, path in outputs.items() if path is not None}
    read = [(flag, Path(path)) for flag, paths in (inputs or {}).items()
            for path in (paths if isinstance(paths, (list, tuple)) else [paths]) if path is not None]
    places = {}
    for flag, path in outputs.items():
        _check_kind(flag, path)
        for input_flag, source in read:
            if same_file(path, source):
                raise OutputError(f"{flag} {path}: that is the file {input_flag} reads; write to another path")
        place = os.path.join(os.path.realpath(path.parent), path.name)
        if place in places:
            raise OutputError(f"{flag} {path}: {places[place]} writes there too; give each output its own path")
        places[place] = flag
        _check_not_existing(flag, path, overwrite or flag in continued)
    claim = Claim()
    for flag, path in outputs.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, probe = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
            os.close(handle)
            os.unlink(probe)
        except OSError as error:
            raise OutputError(f"{flag} {path}: cannot write in {path.parent} ({os_reason(error)})") from None
        claim._lock(flag, path)
        _check_not_existing(flag, path, overwrite or flag in continued)  # again: no other run can make it now
    return claim


def same_file(first, second):
    """Whether two paths name one file: the same inode where both exist, else the same resolved path."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return Path(first).resolve() == Path(second).resolve()


def _check_kind(flag, path):
    """Refuse a name or path too long, a path under a file, and anything but a regular file."""
    path_max = _limit(".", "PC_PATH_MAX", 4096)  # counting the final NUL
    if len(os.fsencode(str(path))) >= path_max:
        raise OutputError(f"{flag} {str(path)[:40]}...: the path is {len(os.fsencode(str(path)))} bytes, "
                          f"more than the {path_max - 1} this system allows; choose a shorter path")
    name_max = _limit(_existing_folder(flag, path), "PC_NAME_MAX", 255)
    if len(os.fsencode(path.name)) > name_max:
        raise OutputError(f"{flag} {path.name[:40]}...: the file name is {len(os.fsencode(path.name))} bytes, "
                          f"more than the {name_max} this file system allows; choose a shorter name")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise OutputError(f"{flag} {path}: {os_reason(error)}") from None
    if stat.S_ISDIR(mode):
        raise OutputError(f"{flag} {path}: it is a folder; give a file path inside it")
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise OutputError(f"{flag} {path}: it is {kind}, not a regular file; write to a file")


def _existing_folder(flag, path):
    """The nearest folder of `path` that exists; OutputError if a file stands where a folder must."""
    for part in path.parents:
        try:
            if stat.S_ISDIR(os.stat(part).st_mode):
                return part
            raise OutputError(f"{flag} {path}: {part} is a file, not a folder")
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            continue  # a file further up: found on the next part
        except OSError as error:
            raise OutputError(f"{flag} {path}: {os_reason(error)}") from None
    return Path(".")


def _limit(folder, name, default):
    try:
        return os.pathconf(folder, name)
    except (OSError, ValueError):
        return default


def _check_not_existing(flag, path, allowed):
    if not allowed and os.path.lexists(path):
        raise OutputError(f"{flag} {path}: the file already exists; choose another path, or pass --overwrite "
                          "to replace it")


def os_reason(error):
    """An OSError as a short reason: "the disk is full", "permission denied", ..."""
    hints = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
             errno.EACCES: "permission denied", errno.EPERM: "permission denied",
             errno.ENAMETOOLONG: "the name is too long for the file system",
             errno.ENOTDIR: "part of the path is a file, not a folder"}
    return hints.get(error.errno, error.strerror or str(error))


class Claim:
    """The outputs check_outputs let through, each locked for this process until release()."""

    def __init__(self):
        self._locks = []  # (lock file path, descriptor)
        self._release = weakref.finalize(self, _unlock, self._locks)  # also at the interpreter's exit
        _CLAIMS.add(self)

    def _lock(self, flag, path):
        lock_path = path.parent / (temporary_prefix(path) + "lock")
        while True:
            try:
                handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise OutputError(f"{flag} {path}: cannot write in {path.parent} ({os_reason(error)})") from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(handle, 20).decode(errors="replace").strip() or "?"
                os.close(handle)
                raise OutputError(f"{flag} {path}: another run (process {holder}) is writing it now; wait for it "
                                  "to end, or choose another path") from None
            try:  # the run that held it may have removed the file between our open and our lock
                if os.stat(lock_path).st_ino == os.fstat(handle).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(handle)
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()}\n".encode())
        self._locks.append((lock_path, handle))

    def release(self):
        """Remove the lock files and unlock; the outputs may then be written by another command."""
        self._release()


_CLAIMS = weakref.WeakSet()


def _unlock(locks):
    for lock_path, handle in locks:
        try:  # remove the lock file only while it is still ours, then let go of it
            if os.stat(lock_path).st_ino == os.fstat(handle).st_ino:
                os.unlink(lock_path)
        except OSError:
            pass
        os.close(handle)
    locks.clear()


# ----- stopping ---------------------------------------------------------------------------------
class Stopped(KeyboardInterrupt):
    """A command was stopped by SIGINT (Ctrl-C) or SIGTERM: `signum`, `status` (128 + signum) and
    the one line to print (`message`, or None for the plain "Stopped by Ctrl-C.")."""

    def __init__(self, signum, message=None):
        super().__init__(message)
        self.signum, self.status, self.message = signum, 128 + signum, message


class StopRequest:
    """The process's handler of SIGINT and SIGTERM (STOP), installed by main() until the exit.
    While `deferring`, the first signal only sets `requested` (its number); otherwise, and at a
    second signal, it raises Stopped at once. Once a stop is under way (`stopping`) further
    signals are ignored, so nothing interrupts the exit (a double Ctrl-C printed a traceback)."""

    def __init__(self):
        self.requested, self.deferring, self.stopping = None, False, False

    def install(self):
        """Handle SIGINT and SIGTERM with this object from now to the exit; returns it."""
        for signum in SIGNAL_NAMES:
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.stopping:
            return
        if self.deferring and self.requested is None:
            self.requested = signum
            return
        self.stopping = True
        raise Stopped(signum)


STOP = StopRequest()


def main(work):
    """Run `work()` as a command: SIGINT and SIGTERM end it with one line on stderr ("Stopped by
    Ctrl-C." or the Stopped's message) and exit status 130 or 143, after every output's lock is
    released, through os._exit (so no shutdown step can print a traceback). Other exits pass."""
    STOP.install()
    try:
        work()
    except KeyboardInterrupt as stop:
        STOP.stopping = True
        signum = getattr(stop, "signum", signal.SIGINT)
        print(f"\n{getattr(stop, 'message', None) or f'Stopped by {SIGNAL_NAMES[signum]}.'}", file=sys.stderr)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        for claim in list(_CLAIMS):
            claim.release()
        os._exit(128 + signum)
    finally:
        STOP.stopping = True  # a signal during Python's own shutdown is ignored
