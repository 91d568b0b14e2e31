"""Run ``python -m src.train <args>`` many times at the cost of one interpreter start.

A subprocess pays ~5 s of imports (torch, Lightning) before its first line of the lab runs. This
runner imports them once, then forks one child per command line; each child runs ``src.train``
as ``python -m`` does (``runpy`` with ``alter_sys``), with its own stdout, stderr, environment and
exit status. Usage: ``python tests/cli.py <commands.json> <results.json>``, where commands.json is
a list of ``{"args": [...], "env": {...}, "watch": <dir>}`` and results.json gets ``{"rc", "output",
"created"}`` per command, ``created`` being the entries the command added to ``watch``.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_commands(commands: list[dict], env: dict[str, str], timeout: float = 600) -> list[dict]:
    """Run every command (``{"args": [...], "env": {...}}``) in one runner process; rc and output each."""
    with tempfile.TemporaryDirectory() as scratch:
        given, results = Path(scratch, "commands.json"), Path(scratch, "results.json")
        given.write_text(json.dumps(commands))
        process = subprocess.run(
            [sys.executable, str(Path(__file__)), str(given), str(results)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert process.returncode == 0, process.stderr[-3000:]
        return json.loads(results.read_text())


def run_in_child(args: list[str], extra_env: dict[str, str], output: Path) -> int:
    """Fork; the child runs ``python -m src.train *args`` with stdout and stderr into ``output``."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(descriptor, 1)
            os.dup2(descriptor, 2)
            os.environ.update(extra_env)
            sys.argv = ["src/train.py", *args]
            sys.modules.pop("src.train", None)  # run afresh as __main__, as `python -m` would
            runpy.run_module("src.train", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def main(given: Path, results: Path) -> None:
    sys.path.insert(0, str(ROOT))  # as `python -m` from the repository root: this checkout's src
    import io

    import rich.console
    import rich.syntax

    import src.train  # noqa: F401  (the imports every child would otherwise pay for)

    # the config tree's YAML highlighting loads its lexer on first use: once here, not in every child
    rich.console.Console(file=io.StringIO()).print(rich.syntax.Syntax("a: 1", "yaml", theme="ansi_dark"))

    found = []
    with tempfile.TemporaryDirectory() as scratch:
        for i, command in enumerate(json.loads(given.read_text())):
            output = Path(scratch, f"{i}.out")
            watch = Path(command.get("watch") or scratch)
            before = set(watch.iterdir()) if watch.is_dir() else set()
            started = time.perf_counter()
            rc = run_in_child(command["args"], command.get("env", {}), output)
            seconds = time.perf_counter() - started
            created = sorted(str(p) for p in (set(watch.iterdir()) if watch.is_dir() else set()) - before)
            found.append(
                {"rc": rc, "output": output.read_text(errors="replace"), "created": created, "seconds": seconds}
            )
    results.write_text(json.dumps(found))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
