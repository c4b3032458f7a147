"""A cache of `--help` output, so asking for help does not pay for importing typer.

Importing typer is about four fifths of gitopsctl's start-up. The first
`gitopsctl [COMMAND...] --help` renders through typer like any other invocation and stores
the exact bytes it wrote; a later one with the same key prints them before typer is imported.

The key holds everything the rendering reads: argv; the inputs of the terminal width click
computes (COLUMNS, LINES, the size of the terminal on stdout); the environment variables
click, typer, rich and gitopsctl consult; stdout's encoding and whether it is a terminal; the
interpreter and its module search path; gitopsctl's location and version. An entry also
lists every non-stdlib source file that was loaded while rendering, with its mtime and size
(the test Python itself uses to trust a .pyc), so an edited command, another typer or a
reinstalled gitopsctl is a miss.

A missing, stale, corrupt, foreign or unwritable entry is a miss: typer renders as it always
did, and the command never fails because of the cache. Imports only os, sys, io, time and zlib,
all loaded by the interpreter's own start-up or built in.
"""

from __future__ import annotations

import io
import os
import sys
import time
import zlib

HELP_FLAGS = ("--help", "-h")
_MAGIC = b"gitopsctl-help-cache 1\n"
_COMPLETION_VAR = "_GITOPSCTL_COMPLETE"  # typer's completion protocol: never help
_ENV_NAMES = frozenset({
    "COLUMNS", "LINES", "TERM", "NO_COLOR", "FORCE_COLOR", "CLICOLOR", "CLICOLOR_FORCE",
    "PY_COLORS", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TERMINAL_WIDTH", "GITHUB_ACTIONS",
    "GITEA_ACTIONS", "PYTHONIOENCODING", "PYTHONUTF8", "LANG", "LC_ALL", "LC_CTYPE"})
_ENV_PREFIXES = ("GITOPSCTL", "_GITOPSCTL", "TYPER", "_TYPER", "COMP_")
# A source modified this close to the render may have changed after it was read (or within
# the file system's mtime granularity): that render is printed but not stored.
_RACY_NS = 2_000_000_000


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gitopsctl", "help")


def is_help_request(args: list[str]) -> bool:
    """`[COMMAND...] --help` and nothing else: any option or value before it might change
    what is printed (or fail), so those always go through typer."""
    if not args or args[-1] not in HELP_FLAGS or _COMPLETION_VAR in os.environ:
        return False
    return all(word.isascii() and word[:1].isalpha() and word.islower()
               and word.replace("-", "").isalnum() for word in args[:-1])


class HelpRequest:
    """One help request's key and where its entry lives."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.created_ns = time.time_ns()  # before any source of a render is read
        name = f"{zlib.crc32(key):08x}{zlib.adler32(key):08x}"
        self.path = os.path.join(cache_dir(), name)

    @classmethod
    def for_args(cls, args: list[str]) -> HelpRequest | None:
        """None when `args` is not a help request or stdout cannot be written as bytes."""
        if not is_help_request(args):
            return None
        try:
            return cls(_key(args))
        except (AttributeError, OSError, ValueError):  # no usable stdout: let typer deal with it
            return None

    def cached(self) -> bytes | None:
        """The stored help, or None when there is no entry this request may trust."""
        try:
            with open(self.path, "rb") as entry:
                if os.fstat(entry.fileno()).st_uid != os.getuid():
                    return None  # someone else's file in a shared cache directory
                return _parse(entry.read(), self.key)
        except (OSError, ValueError):
            return None

    def serve(self) -> bool:
        """Print the cached help; False (nothing printed) on a miss."""
        body = self.cached()
        if body is None:
            return False
        try:
            sys.stdout.buffer.write(body)
            sys.stdout.flush()
        except BrokenPipeError:
            # as click does for typer's own output: the reader left; exit 1, no traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        return True

    def store(self, body: bytes) -> None:
        """Write the entry atomically; any failure leaves the cache as it was."""
        from gitopsctl.errors import GitopsctlError  # only on a miss: off the hit's path
        from gitopsctl.fsutil import write_atomic

        try:
            entry = _MAGIC + self.key + b"\n" + _loaded_sources(self.created_ns - _RACY_NS) + \
                f"{len(body)} {zlib.crc32(body)}\n".encode() + body
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            write_atomic(self.path, entry, 0o600)
        except (OSError, ValueError, UnicodeError, GitopsctlError):
            pass


def _key(args: list[str]) -> bytes:
    import gitopsctl

    out = sys.stdout
    out.buffer  # noqa: B018 - a hit writes bytes: without a buffer there is nothing to serve
    try:
        size = tuple(os.get_terminal_size(sys.__stdout__.fileno()))
    except (AttributeError, OSError, ValueError):
        size = None
    env = sorted((name, value) for name, value in os.environ.items()
                 if name in _ENV_NAMES or name.startswith(_ENV_PREFIXES))
    parts = (sys.version, sys.executable, tuple(sys.path), os.path.dirname(gitopsctl.__file__),
             gitopsctl.__version__, tuple(args), size, out.isatty(), out.encoding, out.errors,
             tuple(env))
    return repr(parts).encode("utf-8", "backslashreplace")


def _loaded_sources(modified_before_ns: int) -> bytes:
    """Every module file outside the standard library now loaded, with its mtime and size."""
    stdlib = os.path.dirname(os.__file__) + os.sep
    lines = []
    for path in sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}):
        if not path or path.startswith(stdlib) or not os.path.isabs(path):
            continue
        if "\n" in path:
            raise ValueError("a module path with a newline cannot be recorded")
        stat = os.stat(path)
        if stat.st_mtime_ns >= modified_before_ns:
            raise ValueError(f"{path} changed while (or just before) help was rendered")
        lines.append(f"{stat.st_mtime_ns} {stat.st_size} {path}\n")
    return f"{len(lines)}\n{''.join(lines)}".encode("utf-8", "surrogateescape")


def _parse(data: bytes, key: bytes) -> bytes | None:
    header = _MAGIC + key + b"\n"
    if not data.startswith(header):
        return None  # another format, or a crc collision with another key
    rest = io.BytesIO(data[len(header):])
    for _ in range(int(rest.readline())):
        mtime, size, path = rest.readline().rstrip(b"\n").split(b" ", 2)
        stat = os.stat(path)
        if (stat.st_mtime_ns, stat.st_size) != (int(mtime), int(size)):
            return None
    length, crc = (int(n) for n in rest.readline().split())
    body = rest.read()
    if len(body) != length or zlib.crc32(body) != crc:
        return None  # truncated or damaged
    return body


class _Tee(io.RawIOBase):
    """Bytes written to a standard stream, passed on as they come and kept."""

    def __init__(self, target) -> None:
        super().__init__()
        self.target = target
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        written = self.target.write(data)
        self.data += bytes(data)
        return written if written is not None else len(data)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()


class recording:
    """While typer runs a help request, keep what it prints; store it when it exited 0
    having written to stdout only. Does nothing when `request` is None."""

    def __init__(self, request: HelpRequest | None) -> None:
        self.request = request
        self.streams: dict[str, tuple] = {}

    def __enter__(self) -> recording:
        if self.request is None:
            return self
        try:
            for name in ("stdout", "stderr"):
                original = getattr(sys, name)
                original.flush()
                wrapper = io.TextIOWrapper(_Tee(original.buffer), encoding=original.encoding,
                                           errors=original.errors, write_through=True,
                                           line_buffering=original.line_buffering)
                self.streams[name] = (original, wrapper, wrapper.buffer)
        except (AttributeError, OSError, ValueError):  # not a real stream: record nothing
            self.request = None
            return self
        for name, (_original, wrapper, _tee) in self.streams.items():
            setattr(sys, name, wrapper)
        return self

    def __exit__(self, kind, exc, traceback) -> None:
        if self.request is None:
            return
        for name, (original, wrapper, _tee) in self.streams.items():
            wrapper.flush()
            wrapper.detach()  # leave the real stream open
            setattr(sys, name, original)
        succeeded = kind is None or (kind is SystemExit and exc.code in (None, 0))
        out, err = self.streams["stdout"][2].data, self.streams["stderr"][2].data
        if succeeded and out and not err:
            self.request.store(bytes(out))
