"""One exception family. Each error knows its exit code and how to fix it.

Exit codes (documented in README.md):
  0 success
  1 deploy failed and was rolled back (also: `check` found problems)
  2 usage, config or input error
  3 rollback failed, a human must act
  4 superseded: a newer deploy is already live, nothing changed
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_ROLLED_BACK = 1
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_HUMAN_NEEDED = 3
EXIT_SUPERSEDED = 4


@dataclass(frozen=True)
class Location:
    """Where in a file the problem is; line and column are 1-based."""

    path: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.path]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class GitopsctlError(Exception):
    """Base of every error gitopsctl reports to a user.

    `message` says what went wrong, `location` where, `hint` how to fix it.
    """

    exit_code = EXIT_USAGE
    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None,
                 location: Location | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.location = location
        self.details = details or {}

    def __str__(self) -> str:
        prefix = f"{self.location}: " if self.location else ""
        return f"{prefix}{self.message}"

    def to_dict(self) -> dict:
        out: dict = {"kind": self.kind, "message": self.message, "exit_code": self.exit_code}
        if self.location:
            out["location"] = str(self.location)
        if self.hint:
            out["hint"] = self.hint
        if self.details:
            out["details"] = self.details
        return out


class UsageError(GitopsctlError):
    kind = "usage"


class ConfigError(GitopsctlError):
    kind = "config"


class InputError(GitopsctlError):
    """Bad input data: a YAML file, an image reference, a SHA, a manifest."""

    kind = "input"


class ExternalError(GitopsctlError):
    """A service we depend on (registry, git remote, docker, SSH, API server) failed.

    Exit 1: the operation failed and what is live did not change.
    """

    exit_code = EXIT_ROLLED_BACK
    kind = "external"


class CheckFailed(GitopsctlError):
    """A health check failed (no rollback attempted by the raiser)."""

    exit_code = EXIT_ROLLED_BACK
    kind = "check-failed"


class Superseded(GitopsctlError):
    exit_code = EXIT_SUPERSEDED
    kind = "superseded"
