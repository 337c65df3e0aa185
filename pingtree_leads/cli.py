"""``flask pingtree-leads ...``: provisioning, key rotation, indexes, the spec, CSV import.

The commands are module-level click commands added to the blueprint's own CLI
group, so they come with ``register_blueprint`` as well as with ``init_app``; each
finds its runtime through ``current_app`` (``--blueprint NAME`` when the app mounts
the endpoint more than once).  Errors are one clear line and a non-zero exit code,
never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from flask.cli import with_appcontext
from pymongo.errors import OperationFailure, PyMongoError

from .importer import OUTCOMES, ImportFileError, count_rows, import_csv, parse_mapping
from .mongo import parse_object_id
from .provisioning import create_source, rotate_api_key, set_source_active
from .repository import LeadIndexError
from .runtime import LeadsRuntime, get_runtime
from .schemas import DEDUPE_FIELDS, REQUIRABLE_FIELDS, schema_for
from .sources import SourceConfig

F = TypeVar("F", bound=Callable[..., Any])


def _names(value: tuple[str, ...], allowed: tuple[str, ...], option: str) -> list[str]:
    """Repeatable, comma-separated field names; 'none' for an empty list."""
    names = [n.strip() for item in value for n in item.split(",") if n.strip()]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise click.BadParameter(f"unknown field(s) {', '.join(unknown)}; choose from {', '.join(allowed)}",
                                 param_hint=option)
    return names


def _friendly_errors(command: F) -> F:
    """Database and lookup failures as one line and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (LookupError, ImportFileError, LeadIndexError) as exc:  # their messages say what to do
            raise click.ClickException(str(exc)) from None
        except PyMongoError as exc:
            raise click.ClickException(
                f"database error ({type(exc).__name__}): check the server, then run the command again "
                "(an import stores nothing twice)"
            ) from None

    return wrapper  # type: ignore[return-value]


_BLUEPRINT_META = "pingtree_leads.blueprint"


def _remember_blueprint(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[_BLUEPRINT_META] = value


_blueprint_option = click.option(
    "--blueprint", metavar="NAME", expose_value=False, is_eager=True, callback=_remember_blueprint,
    help="The pingtree_leads blueprint to work on, when the app mounts more than one.",
)


def runtime() -> LeadsRuntime:
    """The runtime the command works on: the current app's, chosen by ``--blueprint`` if it has several."""
    return get_runtime(name=click.get_current_context().meta.get(_BLUEPRINT_META))


def provisioning() -> dict[str, Any]:
    """The keyword arguments every provisioning call takes from the app's settings."""
    settings = runtime().settings
    return {"sources_collection": settings.sources_collection, "clock": settings.clock}


def source_or_fail(source_id: str) -> SourceConfig:
    oid = parse_object_id(source_id)
    source = runtime().sources.get(oid) if oid is not None else None
    if source is None:
        raise LookupError(f"no database source with id {source_id!r}")
    return source


@click.command("create-source")
@_blueprint_option
@with_appcontext
@click.argument("name")
@click.option("--required", multiple=True, metavar="FIELDS", help="Required fields (repeat or comma-separate).")
@click.option("--dedupe", multiple=True, default=("email,mobile",), show_default=True, metavar="FIELDS",
              help="Fields to deduplicate on; 'none' disables deduplication.")


@click.option("--window-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Deduplicate only against leads of the last N days (default: forever).")


@click.option("--inactive", is_flag=True, help="Create the source switched off (it answers 403).")
@_friendly_errors
def create_source_command(
    name: str, required: tuple[str, ...], dedupe: tuple[str, ...], window_days: float | None, inactive: bool
) -> None:
    """Create a database source; prints its id and its API key (shown only this once)."""
    if not name.strip():
        raise click.BadParameter("must not be blank", param_hint="NAME")
    created = create_source(
        runtime().database, name,
        required_fields=_names(required, REQUIRABLE_FIELDS, "--required"),
        dedupe_fields=_names(dedupe, DEDUPE_FIELDS, "--dedupe"),
        dedupe_window_days=window_days, is_active=not inactive, **provisioning(),
    )
    click.echo(f"id:      {created.id}")
    click.echo(f"api key: {created.api_key}")
    click.echo("Keep the key now: only its hash is stored.", err=True)


@click.command("list-sources")
@_blueprint_option
@with_appcontext
@_friendly_errors
def list_sources() -> None:
    """List database sources (never their keys)."""
    settings = runtime().settings
    docs = runtime().database[settings.sources_collection].find({}, {"api_keys": 0}).sort("_id", 1)
    rows = [("ID", "ACTIVE", "REQUIRED", "DEDUPE", "WINDOW", "NAME")]
    for doc in docs:
        window = doc.get("dedupe_window_days")
        rows.append((
            str(doc["_id"]), "yes" if doc.get("is_active", True) else "no",
            ",".join(doc.get("required_fields", [])) or "-", ",".join(doc.get("dedupe_fields", [])) or "-",
            "forever" if window is None else f"{window:g}d", doc.get("name", ""),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]))


@click.command("rotate-key")
@_blueprint_option
@with_appcontext
@click.argument("source_id")
@click.option("--grace", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Seconds the old key keeps working.")


@_friendly_errors
def rotate_key(source_id: str, grace: float) -> None:
    """Give a source a new API key; prints it (shown only this once)."""
    key = rotate_api_key(runtime().database, source_or_fail(source_id).id, grace, **provisioning())
    click.echo(f"api key: {key}")


def set_active_command(active: bool) -> Callable[[str], None]:
    @_friendly_errors
    def command(source_id: str) -> None:
        set_source_active(runtime().database, source_or_fail(source_id).id, active, **provisioning())
        click.echo(f"{source_id}: {'active' if active else 'inactive'}")

    return command


activate = click.command("activate", help="Switch a source on.")(
    _blueprint_option(with_appcontext(click.argument("source_id")(set_active_command(True))))
)


deactivate = click.command("deactivate", help="Switch a source off (it answers 403).")(
    _blueprint_option(with_appcontext(click.argument("source_id")(set_active_command(False))))
)


@click.command("ensure-indexes")
@_blueprint_option
@with_appcontext
@_friendly_errors
def ensure_indexes_command() -> None:
    """Create the unique indexes leads rely on (idempotent)."""
    try:
        runtime().repository.ensure_indexes()
    except OperationFailure as exc:
        raise click.ClickException(
            f"the server refused to create the indexes (code {exc.code}): an index of the same name with "
            "another shape, or leads that already break a unique rule, must be removed first"
        ) from None
    click.echo(f"indexes in place on {runtime().repository.leads.full_name}")


@click.command("openapi")
@_blueprint_option
@with_appcontext
@click.option("--prefix", default=None, help="Path prefix of the endpoint [default: where the blueprint is mounted].")
def openapi_command(prefix: str | None) -> None:
    """Print the OpenAPI document of the endpoint."""
    rt = runtime()
    click.echo(rt.openapi_json((rt.url_prefix if prefix is None else prefix).rstrip("/")))


@click.command("import")
@_blueprint_option
@with_appcontext
@click.argument("source_id")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--map", "mappings", multiple=True, metavar="COLUMN=FIELD", help="Rename a column (repeatable).")
@click.option("--rejects", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write every row not stored, with its reason, to this CSV file.")


@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@_friendly_errors
def import_command(
    source_id: str, csv_file: Path, mappings: tuple[str, ...], rejects: Path | None, batch_size: int
) -> None:
    """Import leads from a CSV file (header row = field names) with the endpoint's rules."""
    rt = runtime()
    source = source_or_fail(source_id)
    if not source.is_active:
        raise click.ClickException(f"source {source_id} is inactive (the endpoint answers 403): activate it first")
    mapping = parse_mapping(mappings)
    total = count_rows(csv_file)
    rt.ensure_ready()
    reject_file = rejects.open("w", encoding="utf-8", newline="") if rejects else None
    try:
        with click.progressbar(length=total, label="importing", file=sys.stderr) as bar:
            summary = import_csv(
                csv_file, source, rt.repository, rt.settings, schema_for(source.required_fields, rt.settings),
                mapping=mapping, rejects=reject_file, batch_size=batch_size, progress=bar.update,
            )
    finally:
        if reject_file:
            reject_file.close()
    counts = summary.as_dict()
    click.echo(f"rows: {summary.rows}")
    for name in OUTCOMES:
        click.echo(f"{name}: {counts[name]}")


#: Every command, in the order ``flask pingtree-leads --help`` lists them (added to each blueprint's group).
COMMANDS: tuple[click.Command, ...] = (
    create_source_command, list_sources, rotate_key, activate, deactivate, ensure_indexes_command,
    openapi_command, import_command,
)
