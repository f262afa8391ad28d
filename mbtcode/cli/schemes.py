"""``mbtcode scheme …``: coding schemes and instruments (JSON files)."""

from __future__ import annotations

from pathlib import Path

import click

from ..io.schemes import SchemeError, load_scheme_file
from ..services import ServiceError
from ..services.schemes import list_scheme_versions, register_scheme
from ._common import emit_json, require_current_schema, transactional


@click.group()
def scheme() -> None:
    """Validate, add and list coding schemes."""


def _load(path: str):
    try:
        return load_scheme_file(path)
    except SchemeError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        raise ServiceError(f"{path}: not a valid scheme ({len(exc.problems)} problem(s) above)") from exc
    except OSError as exc:
        raise ServiceError(f"{path}: cannot read ({exc.strerror})") from exc


@scheme.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@transactional
def validate(file: str) -> None:
    """Check a scheme file against the JSON Schema and the scheme rules; writes nothing."""
    loaded = _load(file)
    parts = [f"{len(loaded.code_sets)} code set(s)", f"{len(loaded.instruments)} instrument(s)"]
    click.echo(f"{file}: valid scheme '{loaded.id}' version {loaded.version} ({', '.join(parts)}).")


@scheme.command("add")
@click.argument("file", type=click.Path(dir_okay=False))
@transactional
def add(file: str) -> None:
    """Store a scheme file as a new immutable revision (identical content is a no-op)."""
    require_current_schema()
    loaded = _load(file)
    version, created = register_scheme(loaded, actor=None, source_filename=Path(file).name)
    if created:
        click.echo(f"Added scheme {version.ref} (version {version.version}).")
    else:
        click.echo(f"Unchanged: identical to stored scheme {version.ref}.")


@scheme.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@transactional
def list_(as_json: bool) -> None:
    """List stored scheme revisions."""
    require_current_schema()
    versions = list_scheme_versions()
    if as_json:
        emit_json([
            {"id": v.key, "revision": v.revision, "ref": v.ref, "version": v.version,
             "title": v.title, "sha256": v.sha256}
            for v in versions
        ])
        return
    for v in versions:
        click.echo(f"{v.ref:<28} version {v.version:<10} {v.title}")
