"""One exception family. Each error knows its exit code and how to fix it.

Exit codes: EXIT_MEANINGS below, the one table of them (README.md documents it; the CI
job summary, `gitopsctl summary`, reads it).
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_ROLLED_BACK = 1
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_HUMAN_NEEDED = 3
EXIT_SUPERSEDED = 4
# Not 4: a pipeline may treat "superseded" as done, but a paused deploy is still to do.
EXIT_SUSPENDED = 5
# EX_SOFTWARE (sysexits.h): a bug in gitopsctl, whatever the command
EXIT_INTERNAL = 70

EXIT_MEANINGS = {
    EXIT_OK: "success",
    EXIT_ROLLED_BACK: "deploy failed and was rolled back (also: `check` found problems)",
    EXIT_USAGE: "usage, config or input error, nothing changed",
    EXIT_HUMAN_NEEDED: "rollback failed, a human must act",
    EXIT_SUPERSEDED: "superseded: a newer deploy is already live, nothing changed",
    EXIT_SUSPENDED: "suspended: deploys are paused (`gitopsctl suspend`), nothing changed",
    EXIT_INTERNAL: "internal error: a bug in gitopsctl (rerun with -v for the traceback)",
}


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


class Suspended(GitopsctlError):
    """Deploys are suspended in git (deploy/suspension.py); a stage stops before any push."""

    exit_code = EXIT_SUSPENDED
    kind = "suspended"
