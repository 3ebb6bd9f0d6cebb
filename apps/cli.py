"""The ``edge`` command line (typer). Content goes to stdout, diagnostics to stderr."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Optional

import typer

from edge.errors import EdgeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Export multimodal LLMs into bundles and run them offline on this machine.",
)


from edge.apps.bench import bench  # noqa: E402
from edge.apps.bundle_cmds import export, inspect, quantize  # noqa: E402
from edge.apps.device_cmds import compile, doctor  # noqa: E402
from edge.apps.live_cmds import live  # noqa: E402
from edge.apps.run_cmds import chat, run  # noqa: E402
from edge.apps.serve.command import serve  # noqa: E402
from edge.apps.speech_cmds import listen, transcribe  # noqa: E402

# The commands live in modules by subject; the order here is the order of `edge --help`.
for _command in (export, quantize, compile, run, chat, serve, live, transcribe, listen, inspect, doctor, bench):
    app.command()(_command)


def _kind(exc: BaseException) -> set[str]:
    # typer vendors click in recent releases and uses click itself in older ones:
    # recognise the command-line exceptions by class name, whichever module they are from.
    return {cls.__name__ for cls in type(exc).__mro__}


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point: one-line errors on stderr and an exit code, never a traceback."""
    from edge.apps.backends import setup_logging

    setup_logging()  # warnings of every command reach stderr; --verbose raises the level
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=argv, prog_name="edge", standalone_mode=False)
        return rc if isinstance(rc, int) else 0  # typer.Exit(code) comes back as its code
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        kind = _kind(exc)
        if "NoArgsIsHelpError" in kind:
            ctx = getattr(exc, "ctx", None)
            print(ctx.get_help() if ctx else "", file=sys.stderr)
            return 2
        if "UsageError" in kind or "ClickException" in kind:
            print(f"error: {' '.join(exc.format_message().split())}", file=sys.stderr)
            return 2
        if "Abort" in kind:
            print("interrupted", file=sys.stderr)
            return 130
        if "Exit" in kind:
            return int(getattr(exc, "exit_code", 0) or 0)
        # a bug: say so in one line; EDGE_DEBUG=1 shows the traceback
        if os.environ.get("EDGE_DEBUG"):
            traceback.print_exc()
        print(
            f"error: internal error ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); "
            "set EDGE_DEBUG=1 for the traceback",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
