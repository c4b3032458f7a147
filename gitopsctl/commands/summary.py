"""gitopsctl summary: the CI job summary, in Markdown, from the JSON results of build and stage
(the work is gitopsctl.summary)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from gitopsctl.errors import InputError
from gitopsctl.summary import CommandRecord, read_record, render, verdict


@dataclass
class SummaryResult:
    markdown: str
    verdict: str
    records: list[CommandRecord]
    output_file: str | None = None
    # a report about other commands: their exit codes decide the job, not this one's
    exit_code: int = 0

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "output_file": self.output_file,
                "commands": [{"name": r.name, "path": r.path, "ran": r.ran,
                              "exit_code": r.exit_code, "problem": r.problem or None}
                             for r in self.records],
                "markdown": self.markdown}

    def render_text(self, console: Any) -> None:
        console.print(self.markdown, markup=False, highlight=False, end="")


def summary(ctx, sources: Sequence[Path], output_file: Path | None = None) -> SummaryResult:
    if not sources:
        raise InputError("no result to summarise", hint="name each command's JSON result with "
                         "--from, e.g. --from build.json --from stage.json")
    records = [read_record(Path(path)) for path in sources]
    markdown = render(records)
    if output_file is not None:
        # The job summary file collects every step's text, so it is appended to, never replaced.
        try:
            with open(output_file, "a", encoding="utf-8") as out:
                out.write(markdown)
        except OSError as exc:
            raise InputError(f"cannot write the summary to {output_file}: {exc.strerror}",
                             hint="--output-file names a file to append to, e.g. "
                                  "\"$GITHUB_STEP_SUMMARY\"") from None
    return SummaryResult(markdown=markdown, verdict=verdict(records), records=records,
                         output_file=str(output_file) if output_file is not None else None)
