"""The ``variants`` command line: checks what the user typed, builds a typed config and
runs a flow or a plain function.

Every command follows the same order, so that a mistake answers in a second: parse and
check the options and the data folder (:mod:`keras_variants.cli.preflight`), and only then
import TensorFlow, MLflow or Prefect inside the function. Process set-up (quiet libraries,
memory, the Prefect server) lives in :mod:`keras_variants.runtime`; :func:`main` turns
every error into a few ``error:`` lines. A new command is a function in the file of its
concern, taking the shared options of :mod:`keras_variants.cli.options`, registered below.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from keras_variants import memory, runtime
from keras_variants.cli import pipeline, predict, registry, schedule, score, serve
from keras_variants.errors import ConfigError, VariantsError, disk_full

app = typer.Typer(
    help="Train, track and compare the Keras lecture's model variants.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

VERBOSE_FLAGS = ("--verbose", "-v", "--debug")


@app.callback()
def _commands(
    verbose: Annotated[
        bool,
        typer.Option(
            *VERBOSE_FLAGS,
            help="Show the libraries' logs and the full traceback of an error "
            "(allowed anywhere on the command line).",
        ),
    ] = False,
) -> None:
    """Train, track and compare the Keras lecture's model variants."""
    runtime.prepare(verbose)


# The commands, in the order --help lists them; each lives in the file of its concern.
app.command()(pipeline.validate)
app.command()(pipeline.run)
app.command()(pipeline.report)
app.command()(registry.promote)
app.command()(predict.predict)
app.command()(score.score)
app.command()(schedule.schedule)
app.command()(serve.serve)
app.command()(registry.trust)


def main(argv: list[str] | None = None) -> None:
    """Console entry point. Every failure ends as a few ``error:`` lines, exit 2 for a usage
    error and 1 for anything else; ``--verbose`` adds the whole traceback before them."""
    args = _verbose_flags_first(sys.argv[1:] if argv is None else list(argv)) or ["--help"]
    try:
        code = app(args=args, prog_name="variants", standalone_mode=False)
    except typer.TyperException as exc:  # a usage error (exit code 2) or a bad file option
        message = exc.format_message()
        if exc.exit_code == 2:
            ctx = getattr(exc, "ctx", None)
            message += f" (see '{ctx.command_path if ctx else 'variants'} --help')"
        code = _fail(exc, message, exc.exit_code)
    except typer.Abort as exc:
        code = _fail(exc, "aborted", 1)
    except Exception as exc:
        code = _fail(exc, error_message(exc), 2 if isinstance(exc, ConfigError) else 1)
    finally:
        memory.freeze_gc()
    sys.exit(code if isinstance(code, int) else 0)


def _verbose_flags_first(args: list[str]) -> list[str]:
    """``variants run --verbose`` means ``variants --verbose run``: the flag belongs to the
    whole program, so it is accepted anywhere (before a ``--``)."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in VERBOSE_FLAGS]
    return flags + [a for a in args[:end] if a not in VERBOSE_FLAGS] + args[end:]


def error_message(exc: BaseException) -> str:
    """What went wrong in the user's terms: our own errors as they are (also when a library
    wrapped them), a full disk as such, anything else by type, with where to look next."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, VariantsError):
            return str(cause)
        if disk_full(cause):
            where = cause.filename2 or cause.filename or "a file"  # type: ignore[attr-defined]
            return f"no space left on the device writing {where}; free space and run again"
        cause = cause.__cause__ or cause.__context__
    if any(c.__name__ == "MlflowException" for c in type(exc).__mro__):
        return f"MLflow: {exc}"  # e.g. a run, model or version that does not exist
    hint = "" if runtime.is_verbose() else " (run again with --verbose for the traceback)"
    return f"unexpected {type(exc).__name__}: {exc}{hint}"


def _fail(exc: BaseException, message: str, code: int) -> int:
    if runtime.is_verbose():
        import traceback

        traceback.print_exception(exc)
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return code
