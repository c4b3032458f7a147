"""The package's layers, read from the imports themselves (ast, every import in every function).

commands/<x>.py never imports another command module: shared code lives in the core.
gitopsctl/deploy/ (the engine) never imports the CLI side: commands, cli, cliutil,
console, typer, rich or click. It gets its reporter and its targets handed in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gitopsctl

PACKAGE = Path(gitopsctl.__file__).parent
COMMANDS = sorted(p.stem for p in (PACKAGE / "commands").glob("*.py") if p.stem != "__init__")
ENGINE_MAY_NOT = ("gitopsctl.commands", "gitopsctl.cli", "gitopsctl.cliapp", "gitopsctl.cliutil",
                  "gitopsctl.helpcache", "gitopsctl.console",
                  "typer", "rich", "click")
# Known exceptions, each to be fixed; an entry that is no longer true fails below.
PENDING: set[tuple[str, str]] = set()


def imported(path: Path) -> set[str]:
    """Every module `path` imports, as dotted names (from-imports of a package's submodules
    count as the submodule)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _is(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def test_no_command_imports_another_command():
    found = set()
    for command in COMMANDS:
        for name in imported(PACKAGE / "commands" / f"{command}.py"):
            other = name.split(".")[2] if _is(name, "gitopsctl.commands") and name.count(".") >= 2 else None
            if other in COMMANDS and other != command:
                found.add((command, f"gitopsctl.commands.{other}"))
    assert found - PENDING == set(), "a command imports another; move what they share into the core"
    assert PENDING <= found, "a pending layering fix landed: drop it from PENDING"


def test_the_engine_never_imports_the_cli_side():
    engine = sorted((PACKAGE / "deploy").rglob("*.py"))
    assert len(engine) >= 8, engine  # plan, state, stage, rollback, converge, verify, status, ...
    bad = {f"{path.relative_to(PACKAGE)}: {name}" for path in engine for name in imported(path)
           if any(_is(name, m) for m in ENGINE_MAY_NOT)}
    assert not bad, sorted(bad)


def test_the_rule_reader_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from gitopsctl.commands import seal\n    import rich.table\n")
    assert {"gitopsctl.commands.seal", "rich.table"} <= imported(sample)
