"""The ``mbtcode`` command line: one click module per area, sharing one app factory."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click
from flask import Flask
from flask.cli import FlaskGroup

from .. import __version__


def _create_app() -> Flask:
    from .. import create_app

    return create_app()


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"mbtcode {__version__}")
        ctx.exit()


class MbtcodeGroup(FlaskGroup):
    """The top-level group; every failure ends in one ``Error: …`` line on stderr.

    click's own usage errors print the usage block first; scripts that call mbtcode want
    one line with the reason, and ``--help`` is there for the rest.
    """

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            click.echo(f"Error: {exc.format_message()}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Error: aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


main = MbtcodeGroup(
    name="mbtcode",
    help="Rate Mentalization-Based Treatment sessions: transcripts, codes, ratings, reliability.",
    create_app=_create_app,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
    params=[
        click.Option(
            ["--version"], is_flag=True, expose_value=False, is_eager=True,
            callback=_version, help="Show the version and exit.",
        )
    ],
)


def _commands() -> list[click.Command]:
    from . import db, demo, import_, import_work, irr, reliability, schemes, sessions, studies, users
    from .export import export

    return [
        db.init,
        db.serve,
        demo.demo,
        users.user,
        studies.study,
        schemes.scheme,
        import_.import_transcripts,
        import_work.import_ratings,
        import_work.import_codes,
        import_work.import_outcomes,
        sessions.session,
        irr.irr,
        reliability.reliability,
        export,
    ]


for _command in _commands():
    main.add_command(_command)


def register_commands(app: Flask) -> None:
    """Also put the commands on ``app.cli``, so ``app.test_cli_runner()`` finds them."""
    for command in _commands():
        app.cli.add_command(command)
