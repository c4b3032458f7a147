"""gitopsctl check: the offline pre-commit review (rules in gitopsctl.checks)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from gitopsctl.checks import RULES, Finding
from gitopsctl.errors import EXIT_FINDINGS


@dataclass
class CheckResult:
    findings: list[Finding]
    files: int
    kustomizations: int
    compose_files: int
    scope: str = ""

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        return len(self.findings) - self.errors

    @property
    def exit_code(self) -> int:
        return EXIT_FINDINGS if self.errors else 0

    def to_dict(self) -> dict:
        return {"errors": self.errors, "warnings": self.warnings, "files": self.files,
                "kustomizations": self.kustomizations, "compose_files": self.compose_files,
                "scope": self.scope,
                "findings": [f.to_dict() for f in self.findings], "rules": RULES}

    def render_text(self, console: Any) -> None:
        for f in self.findings:
            console.print(f"{f.location}: {f.rule} {f.severity}: {f.message}", markup=False)
            console.print(f"  hint: {f.hint}", markup=False)
        summary = (f"checked {self.files} YAML file(s), {self.kustomizations} kustomization(s), "
                   f"{self.compose_files} compose file(s): {self.errors} error(s), "
                   f"{self.warnings} warning(s)")
        console.print(summary, markup=False)
        if self.scope:
            console.print(f"scope: {self.scope}", markup=False)


def check(ctx, *, paths: Sequence[Path] = ()) -> CheckResult:
    from gitopsctl.checks import runner

    config_path = Path(ctx.config_path) if ctx.config_path else None
    report = runner.run(Path(ctx.repo), list(paths), config_path, environ=ctx.environ)
    return CheckResult(report.findings, report.files, report.kustomizations, report.compose_files,
                       report.scope)
