"""The console script's entry point.

Free of typer on purpose: a `--help` the help cache can answer is printed before typer is
imported (gitopsctl.helpcache); everything else runs the Typer app in gitopsctl.cliapp.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from gitopsctl.helpcache import HelpRequest, recording

    help_request = HelpRequest.for_args(sys.argv[1:] if argv is None else list(argv))
    if help_request is not None and help_request.serve():
        return
    from gitopsctl.cliapp import app

    try:
        with recording(help_request):
            app(args=argv, prog_name="gitopsctl")
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
