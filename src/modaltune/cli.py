"""The ``modaltune`` command line. Every command calls a documented Python function.

Sub-command groups register themselves here; user mistakes (``ModaltuneError``) are printed as one
line and exit with status 2, never as a traceback.
"""
from __future__ import annotations

import sys

import typer

from modaltune.errors import ModaltuneError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="modaltune: multi-modal, multi-task fine-tuning of slide foundation models.")
data_app = typer.Typer(no_args_is_help=True, help="Cohort data: simulate, import, validate, summarise.")
app.add_typer(data_app, name="data")


@app.command()
def doctor() -> None:
    """Print versions, optional extras, torch threads/devices and cache locations."""
    from modaltune.doctor import doctor_report

    typer.echo(doctor_report())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``modaltune`` script."""
    try:
        app(args=argv, standalone_mode=False)
    except ModaltuneError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except typer.Exit as exc:  # pragma: no cover - typer control flow
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        return 130
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
