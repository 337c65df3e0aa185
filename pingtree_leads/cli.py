"""``flask pingtree-leads ...``: provisioning, key rotation, indexes, the spec, CSV import.

The commands are module-level click commands added to the blueprint's own CLI
group, so they come with ``register_blueprint`` as well as with ``init_app``; each
finds its runtime through ``current_app`` (``--blueprint NAME`` when the app mounts
the endpoint more than once).  Errors are one clear line and a non-zero exit code,
never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, TypeVar

import click
from bson import ObjectId
from flask import current_app
from flask.cli import with_appcontext
from pymongo.errors import OperationFailure, PyMongoError

from . import signals
from .caps import Cap, caps_from_document, parse_cap
from .consent import EVIDENCE
from .erasure import complete_pending_blocks, ensure_erasure_index, erase_consumer
from .importer import ImportFileError, ImportSummary, count_rows, import_csv, parse_mapping
from .migration import migrate_storage
from .mongo import parse_object_id
from .openapi import YAMLUnavailableError, openapi_document, to_yaml
from .provisioning import check_dedupe_fields, create_source, rotate_api_key, set_source_active, update_source
from .repository import LeadIndexError
from .runtime import LeadsRuntime, get_runtime
from .schemas import REQUIRABLE_FIELDS, schema_for
from .sources import SourceConfig
from .suppression import (
    HashKind,
    SuppressionStore,
    SuppressionWrite,
    check_list_names,
    clear_suppression_list,
    import_suppressions,
    suppress,
    suppression_lists,
    unsuppress,
)

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


def _dedupe_names(value: tuple[str, ...]) -> list[str]:
    """``--dedupe``: standard fields or extra field names, comma-separated or repeated; 'none' for none."""
    names = [n.strip() for item in value for n in item.split(",") if n.strip()]
    if names == ["none"]:
        return []
    try:
        return check_dedupe_fields(names)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--dedupe") from None


def _list_names(value: tuple[str, ...]) -> list[str]:
    """``--suppression-list``: list names, comma-separated or repeated."""
    try:
        return check_list_names([n.strip() for item in value for n in item.split(",") if n.strip()])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--suppression-list") from None
def _caps(value: tuple[str, ...]) -> list[Cap]:
    """``--cap MAX/PER[@TZ]``, repeated: every cap applies."""
    try:
        return [parse_cap(text) for item in value for text in item.split(",") if text.strip()]
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc), param_hint="--cap") from None


_CAP_HELP = ("At most MAX new leads per hour|day|week|month, reset in the IANA zone TZ (UTC if omitted): "
             "MAX/PER[@TZ], e.g. 500/day@America/Chicago; repeat for several caps (all apply).")


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


def erasure_collections() -> dict[str, Any]:
    """Where ``create_source``/``update_source`` write an erased consumer's blocks from."""
    settings = runtime().settings
    return {"leads_collection": settings.leads_collection, "erasures_collection": settings.erasures_collection}


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
              help="Fields to deduplicate on: standard fields or extra field names (custom dedupe); "
                   "'none' disables deduplication.")
@click.option("--window-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Deduplicate only against leads of the last N days (default: forever).")
@click.option("--inactive", is_flag=True, help="Create the source switched off (it answers 403).")
@click.option("--lenient", is_flag=True,
              help="Normalise phone punctuation, ZIP+4, state names and MM/DD/YYYY before the rules.")
@click.option("--suppression-list", "lists", multiple=True, metavar="LIST",
              help="A suppression list its leads are checked against (repeat or comma-separate).")
@click.option("--retention-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Have MongoDB remove each lead N days after it was stored (default: keep).")
@click.option("--require-any-of", multiple=True, metavar="EVIDENCE",
              help="Consent evidence a lead needs one of: trusted_form or consent field names (repeat or "
                   "comma-separate).")
@click.option("--require-trusted-form-host", is_flag=True,
              help="Accept xxTrustedFormCertUrl only on cert.trustedform.com.")
@click.option("--cap", "cap", multiple=True, metavar="MAX/PER[@TZ]", help=_CAP_HELP)
@_friendly_errors
def create_source_command(
    name: str, required: tuple[str, ...], dedupe: tuple[str, ...], window_days: float | None, inactive: bool,
    lenient: bool, lists: tuple[str, ...], retention_days: float | None, require_any_of: tuple[str, ...] = (),
    require_trusted_form_host: bool = False, cap: tuple[str, ...] = (),
) -> None:
    """Create a database source; prints its id and its API key (shown only this once)."""
    if not name.strip():
        raise click.BadParameter("must not be blank", param_hint="NAME")
    created = create_source(
        runtime().database, name,
        required_fields=_names(required, REQUIRABLE_FIELDS, "--required"),
        dedupe_fields=_dedupe_names(dedupe),
        dedupe_window_days=window_days, is_active=not inactive, lenient=lenient, **provisioning(),
        suppression_lists=_list_names(lists),
        retention_days=retention_days,
        require_any_of=_names(tuple(n.lower() for n in require_any_of), tuple(EVIDENCE), "--require-any-of"),
        require_trusted_form_host=require_trusted_form_host,
        caps=_caps(cap), **erasure_collections(),
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
    rows = [("ID", "ACTIVE", "REQUIRED", "DEDUPE", "WINDOW", "LENIENT", "CAPS", "LISTS", "KEEP", "NAME")]
    for doc in docs:
        window, keep = doc.get("dedupe_window_days"), doc.get("retention_days")
        rows.append((
            str(doc["_id"]), "yes" if doc.get("is_active", True) else "no",
            ",".join(doc.get("required_fields", [])) or "-", ",".join(doc.get("dedupe_fields", [])) or "-",
            "forever" if window is None else f"{window:g}d", "yes" if doc.get("lenient") else "no",
            _cap_use(doc), ",".join(doc.get("suppression_lists", [])) or "-",
            "forever" if keep is None else f"{keep:g}d", doc.get("name", ""),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]))


def _cap_use(doc: dict[str, Any]) -> str:
    """Each cap's use in its current window, ``312/500 day`` (one read per cap), or ``-``."""
    caps = caps_from_document(doc.get("caps"))
    if not caps:
        return "-"
    rt = runtime()
    source = SourceConfig.from_document(doc)
    now = rt.settings.clock()
    uses = []
    for cap in caps:
        start, _ = cap.window(now)
        used = len(rt.repository.cap_slots.used(source, cap, start))  # every lead of the window counts
        zone = "" if cap.tz == "UTC" else f"@{cap.tz}"
        uses.append(f"{used}/{cap.max} {cap.per}{zone}")
    return ",".join(uses)


@click.command("update-source")
@_blueprint_option
@with_appcontext
@click.argument("source_id")
@click.option("--name", default=None, help="A new name.")
@click.option("--required", multiple=True, metavar="FIELDS",
              help="Required fields (repeat or comma-separate; 'none' for none).")
@click.option("--dedupe", multiple=True, metavar="FIELDS",
              help="Fields to deduplicate on (as for create-source; 'none' disables deduplication).")
@click.option("--window-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Deduplicate only against leads of the last N days.")
@click.option("--forever", is_flag=True, help="Deduplicate against every stored lead (no window).")
@click.option("--lenient/--strict", default=None, help="Switch lenient normalisation on or off.")
@click.option("--cap", "cap", multiple=True, metavar="MAX/PER[@TZ]",
              help="Replace the source's caps with these (repeat for several). " + _CAP_HELP)
@click.option("--no-caps", is_flag=True, help="Remove every cap of the source.")
@_friendly_errors
def update_source_command(
    source_id: str, name: str | None, required: tuple[str, ...], dedupe: tuple[str, ...],
    window_days: float | None, forever: bool, lenient: bool | None, cap: tuple[str, ...], no_caps: bool,
) -> None:
    """Change a source's settings: only the options given change."""
    if cap and no_caps:
        raise click.UsageError("give --cap or --no-caps, not both")
    if window_days is not None and forever:
        raise click.UsageError("give --window-days or --forever, not both")
    changes: dict[str, Any] = {}
    if name is not None:
        if not name.strip():
            raise click.BadParameter("must not be blank", param_hint="--name")
        changes["name"] = name
    if required:
        changes["required_fields"] = _names(required, REQUIRABLE_FIELDS, "--required")
    if dedupe:
        changes["dedupe_fields"] = _dedupe_names(dedupe)
    if window_days is not None or forever:
        changes["dedupe_window_days"] = window_days
    if lenient is not None:
        changes["lenient"] = lenient
    if cap or no_caps:
        changes["caps"] = _caps(cap)
    if not changes:
        raise click.UsageError("nothing to change: give at least one option")
    update_source(runtime().database, source_or_fail(source_id).id, **changes, **provisioning(),
                  **erasure_collections())
    click.echo(f"{source_id}: updated {', '.join(sorted(changes))}")


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
    """Create the indexes leads rely on (idempotent)."""
    rt = runtime()
    try:
        rt.repository.ensure_indexes()
        # Also what suppression lists and erasures read by, for create_indexes=False deployments.
        rt.suppressions.ensure_indexes()
        ensure_erasure_index(rt.database, rt.settings.erasures_collection)
    except OperationFailure as exc:
        raise click.ClickException(
            f"the server refused to create the indexes (code {exc.code}): an index of the same name with "
            "another shape, or leads that already break a unique rule, must be removed first"
        ) from None
    click.echo(f"indexes in place on {rt.repository.leads.full_name}")
    click.echo(f"indexes in place on {rt.suppressions.collection.full_name} and "
               f"{rt.database[rt.settings.erasures_collection].full_name}")
    settings = rt.settings
    completed = complete_pending_blocks(rt.database, sources_collection=settings.sources_collection,
                                        leads_collection=settings.leads_collection,
                                        erasures_collection=settings.erasures_collection, clock=settings.clock)
    if completed:  # a create_source/update_source that stopped before its erasure blocks were written
        click.echo(f"erasure blocks completed for {len(completed)} source(s): {', '.join(completed)}")
@click.command("purge-holds")
@_blueprint_option
@with_appcontext
@_friendly_errors
def purge_holds_command() -> None:
    """Delete expired pre-ping holds (the TTL index does it on a server; mongomock has none)."""
    rt = runtime()
    removed = rt.repository.purge_expired_holds(rt.settings.clock())
    click.echo(f"expired holds removed: {removed}")


@click.command("migrate-storage")
@_blueprint_option
@with_appcontext
@_friendly_errors
def migrate_storage_command() -> None:
    """Move the leads collection to the shard-ready claims layout (stop the writers first)."""
    rt = runtime()
    report = migrate_storage(rt.database, rt.settings.leads_collection)
    click.echo(f"leads rewritten: {report.leads_rewritten}")
    click.echo(f"old indexes dropped: {', '.join(report.indexes_dropped) or 'none'}")
    click.echo(f"indexes in place on {rt.repository.leads.full_name}")
@click.command("openapi")
@_blueprint_option
@with_appcontext
@click.option("--prefix", default=None, help="Path prefix of the endpoint [default: where the blueprint is mounted].")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Write the document to FILE instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["json", "yaml"]), default=None,
              help="json or yaml (yaml needs PyYAML: the 'yaml' extra) [default: yaml for a FILE ending in "
                   ".yaml or .yml, else json].")
def openapi_command(prefix: str | None, output: Path | None, fmt: str | None) -> None:
    """Print the OpenAPI document of the endpoint."""
    rt = runtime()
    path_prefix = (rt.url_prefix if prefix is None else "/" + prefix.strip("/")).rstrip("/")
    if fmt is None:
        fmt = "yaml" if output is not None and output.suffix.lower() in (".yaml", ".yml") else "json"
    if fmt == "yaml":
        try:
            text = to_yaml(openapi_document(rt.settings, path_prefix))
        except YAMLUnavailableError as exc:
            raise click.ClickException(str(exc)) from None
    else:
        text = rt.openapi_json(path_prefix)
    text = text.rstrip("\n") + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"OpenAPI document ({fmt}) written to {output}", err=True)


#: ``import`` exit codes besides 0, 1 (an error: source, file, indexes) and 2 (usage, from click).
EXIT_NOTHING_IMPORTED = 3  # the file had rows and none was accepted or already imported
EXIT_DATABASE_ERROR = 4  # the database failed (unreachable, timed out, refused): run it again


class _DatabaseError(click.ClickException):
    exit_code = EXIT_DATABASE_ERROR


@click.command("import")
@_blueprint_option
@with_appcontext
@click.argument("source_id")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--map", "mappings", multiple=True, metavar="COLUMN=FIELD", help="Rename a column (repeatable).")
@click.option("--rejects", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write every row not stored, with its reason, to this CSV file.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--dry-run", is_flag=True,
              help="Check every row (fields, duplicates, replays, conflicts against the stored leads); store nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as one JSON object on stdout (progress and warnings go to stderr).")
@_friendly_errors
def import_command(
    source_id: str, csv_file: Path, mappings: tuple[str, ...], rejects: Path | None, batch_size: int,
    dry_run: bool, as_json: bool,
) -> None:
    """Import leads from a CSV file (header row = field names) with the endpoint's rules."""
    started = time.monotonic()
    rt = runtime()
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # the signals' sender
    mapping = parse_mapping(mappings)
    try:
        source = source_or_fail(source_id)
        if not source.is_active:
            raise click.ClickException(f"source {source_id} is inactive (the endpoint answers 403): activate it first")
        total = count_rows(csv_file)
        suppressions = _suppressions_for(rt, source, dry_run)
        if dry_run:
            _warn_unless_indexed(rt)
        else:
            rt.ensure_ready()
        with _rejects_file(rejects) as reject_file, _Progress(total, "checking" if dry_run else "importing") as bar:
            summary = import_csv(
                csv_file, source, rt.repository, rt.settings,
                schema_for(source.required_fields, rt.settings, source.lenient, source.require_any_of,
                           source.require_trusted_form_host),
                mapping=mapping, rejects=reject_file, batch_size=batch_size, progress=bar.update,
                warn=bar.warn, dry_run=dry_run,
                validators=rt.validators, notify=functools.partial(signals.send, sender=app),
                suppressions=suppressions,
            )
    except LeadIndexError:
        raise  # exit 1 with its own message: a setup problem, not a failing server
    except PyMongoError as exc:
        again = "" if dry_run else " (an import stores nothing twice)"
        raise _DatabaseError(
            f"database error ({type(exc).__name__}): check the server, then run the command again{again}"
        ) from None
    _print_summary(summary, source_id, rejects, dry_run, as_json, time.monotonic() - started)
    if summary.none_taken:
        click.echo(f"{'a real import would store' if dry_run else 'imported'} nothing: no row was accepted "
                   "or already imported", err=True)
        click.get_current_context().exit(EXIT_NOTHING_IMPORTED)


def _suppressions_for(rt: LeadsRuntime, source: SourceConfig, dry_run: bool) -> SuppressionStore | None:
    """The store an import checks rows against, for a source with lists.  A dry run creates no
    index, and needs none: the check reads entries by ``_id``."""
    if not source.suppression_lists:
        return None
    if not dry_run:
        rt.suppressions.ensure_ready(rt.settings.create_indexes)
    return rt.suppressions


def _warn_unless_indexed(rt: LeadsRuntime) -> None:
    """A dry run creates nothing, not even the indexes; without them its finds scan the collection."""
    try:
        rt.repository.check_indexes()
    except LeadIndexError:
        click.echo("Warning: the lead indexes are not in place, so this dry run's look-ups scan the collection "
                   "(a real import creates them first, or refuses with create_indexes=False)", err=True)
@contextlib.contextmanager
def _rejects_file(path: Path | None) -> Iterator[IO[str] | None]:
    """``--rejects FILE`` opened for writing (or None when not asked for)."""
    if path is None:
        yield None
        return
    try:
        handle = path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise ImportFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    with handle:
        yield handle


class _Progress:
    """Rows done/total, rate and ETA on stderr (never stdout): one line redrawn in place
    on a terminal, otherwise a line every ``every`` seconds; a last line when done.  Every
    line it leaves ends with a newline, also when a warning or an error interrupts it."""

    def __init__(self, total: int, label: str, every: float = 10.0) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.started = self.shown = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.every = 0.2 if self.tty else every
        self.drawn = False  # a line drawn in place, not yet ended

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.show(final=True)
        else:
            self.end_line()  # before the error's message

    def end_line(self) -> None:
        """End a line drawn in place, so what comes next starts on a line of its own."""
        if self.drawn:
            click.echo(err=True)
            self.drawn = False

    def warn(self, message: str) -> None:
        self.end_line()
        click.echo(f"Warning: {message}", err=True)

    def update(self, rows: int) -> None:
        self.done += rows
        if time.monotonic() - self.shown >= self.every:
            self.show()

    def show(self, final: bool = False) -> None:
        self.shown = time.monotonic()
        elapsed = self.shown - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        line = f"{self.label}: {self.done}/{self.total} rows"
        if self.total:
            line += f" ({self.done / self.total:.0%})"
        line += f", {rate:,.0f} rows/s"
        if final:
            line += f", {elapsed:.1f} s"
        elif rate > 0:
            line += f", ETA {_duration(max(self.total - self.done, 0) / rate)}"
        if self.tty:
            click.echo(f"\r{line}\x1b[K", err=True, nl=final)
            self.drawn = not final
        else:
            click.echo(line, err=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _print_summary(
    summary: ImportSummary, source_id: str, rejects: Path | None, dry_run: bool, as_json: bool, elapsed: float
) -> None:
    counts = summary.as_dict()
    if as_json:
        click.echo(json.dumps({
            "source_id": source_id, "dry_run": dry_run, "rows": summary.rows, "counts": counts,
            "elapsed_seconds": round(elapsed, 3), "rejects": str(rejects) if rejects else None,
        }))
        return
    if dry_run:
        click.echo("dry run, nothing stored; the counts a real import would give now")
    click.echo(f"rows: {summary.rows}")
    for name, count in counts.items():
        click.echo(f"{name}: {count}")
    if rejects:
        click.echo(f"rejected rows written to {rejects}")
    click.echo(f"elapsed {elapsed:.2f} s")


# -- suppression lists ------------------------------------------------------------------------


@click.group("suppress")
def suppress_group() -> None:
    """Suppression lists: add, remove, import and list hashed values (contract section 10)."""


def _pairs(items: tuple[str, ...], option: str) -> dict[str, list[str]]:
    """``FIELD=VALUE`` options as {field: [values]}."""
    found: dict[str, list[str]] = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise click.BadParameter("takes FIELD=VALUE", param_hint=option)
        found.setdefault(field, []).append(value)
    return found


def _values_options(command: F) -> F:
    for decorator in reversed((
        click.option("--email", "emails", multiple=True, metavar="EMAIL", help="An email address (repeatable)."),
        click.option("--mobile", "mobiles", multiple=True, metavar="MOBILE",
                     help="A US mobile number, in any spelling (repeatable)."),
        click.option("--value", "values", multiple=True, metavar="FIELD=VALUE",
                     help="A custom field's value (repeatable)."),
        click.option("--sha256", "sha256", multiple=True, metavar="FIELD=HEX",
                     help="The SHA-256 of a field's canonical value (repeatable)."),
        click.option("--md5", "md5", multiple=True, metavar="FIELD=HEX",
                     help="The MD5 of a field's canonical value, as other platforms export them (repeatable)."),
    )):
        command = decorator(command)
    return command


def _expiry(expires_at: datetime | None, expires_in_days: float | None) -> datetime | None:
    """The entries' expiry in UTC; one past the calendar (year 9999) is a usage error, not a traceback."""
    if expires_at is not None and expires_in_days is not None:
        raise click.UsageError("give --expires-at or --expires-in-days, not both")
    if expires_in_days is not None:
        try:
            return (runtime().settings.clock() + timedelta(days=expires_in_days)).astimezone(timezone.utc)
        except OverflowError:
            raise click.BadParameter("is past the year 9999", param_hint="--expires-in-days") from None
    if expires_at is not None and expires_at.tzinfo is None:
        return expires_at.replace(tzinfo=timezone.utc)  # a date or time without a zone is UTC
    if expires_at is not None:
        try:
            return expires_at.astimezone(timezone.utc)
        except OverflowError:
            raise click.BadParameter("is past the year 9999 in UTC", param_hint="--expires-at") from None
    return expires_at


def _collection() -> dict[str, Any]:
    return {"suppressions_collection": runtime().settings.suppressions_collection}


_expiry_options = (
    click.option("--expires-at", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]),
                 default=None, help="When the entries stop suppressing (UTC unless a zone is given)."),
    click.option("--expires-in-days", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="Entries stop suppressing after N days."),
)


def _written(list_name: str, written: SuppressionWrite) -> None:
    click.echo(f"{list_name}: {written.added} added, {written.updated} already there")


@suppress_group.command("add")
@_blueprint_option
@with_appcontext
@click.argument("list_name")
@_values_options
@_expiry_options[0]
@_expiry_options[1]
@_friendly_errors
def suppress_add(
    list_name: str, emails: tuple[str, ...], mobiles: tuple[str, ...], values: tuple[str, ...],
    sha256: tuple[str, ...], md5: tuple[str, ...], expires_at: datetime | None, expires_in_days: float | None,
) -> None:
    """Add values to a suppression list (only their hashes are stored)."""
    try:
        written = suppress(runtime().database, list_name, emails=emails, mobiles=mobiles,
                           values=_pairs(values, "--value"), sha256=_pairs(sha256, "--sha256"),
                           md5=_pairs(md5, "--md5"), expires_at=_expiry(expires_at, expires_in_days),
                           now=runtime().settings.clock(), **_collection())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _written(list_name, written)


@suppress_group.command("remove")
@_blueprint_option
@with_appcontext
@click.argument("list_name")
@_values_options
@click.option("--all", "everything", is_flag=True, help="Remove every entry of the list.")
@_friendly_errors
def suppress_remove(
    list_name: str, emails: tuple[str, ...], mobiles: tuple[str, ...], values: tuple[str, ...],
    sha256: tuple[str, ...], md5: tuple[str, ...], everything: bool,
) -> None:
    """Remove values (or, with --all, every entry) from a suppression list."""
    if everything and any((emails, mobiles, values, sha256, md5)):
        raise click.UsageError("give values to remove or --all, not both (--all removes every entry of the list)")
    try:
        if everything:
            removed = clear_suppression_list(runtime().database, list_name, **_collection())
        else:
            removed = unsuppress(runtime().database, list_name, emails=emails, mobiles=mobiles,
                                 values=_pairs(values, "--value"), sha256=_pairs(sha256, "--sha256"),
                                 md5=_pairs(md5, "--md5"), **_collection())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"{list_name}: {removed} removed")


@suppress_group.command("import")
@_blueprint_option
@with_appcontext
@click.argument("list_name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--hash", "kind", type=click.Choice(["plain", "sha256", "md5"]), default="plain", show_default=True,
              help="What the file holds: plain values, or hex digests of their canonical text.")
@click.option("--field", default="email", show_default=True, help="email, mobile or a custom field name.")
@_expiry_options[0]
@_expiry_options[1]
@_friendly_errors
def suppress_import(
    list_name: str, file: Path, kind: HashKind, field: str, expires_at: datetime | None,
    expires_in_days: float | None,
) -> None:
    """Add a file's values (first CSV column, one per row) to a suppression list."""
    try:
        written = import_suppressions(runtime().database, list_name, file, hash=kind, field=field,
                                      expires_at=_expiry(expires_at, expires_in_days),
                                      now=runtime().settings.clock(), **_collection())
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"{file}: {exc}" if isinstance(exc, UnicodeDecodeError) else str(exc)) from None
    _written(list_name, written)
    if written.invalid_rows:
        shown = ", ".join(map(str, written.invalid_rows[:20])) + (", ..." if written.invalid > 20 else "")
        click.echo(f"{written.invalid} row(s) not read as {kind} {field} values: {shown}", err=True)


@suppress_group.command("list")
@_blueprint_option
@with_appcontext
@_friendly_errors
def suppress_list() -> None:
    """The suppression lists and their live entries."""
    counts = suppression_lists(runtime().database, now=runtime().settings.clock(), **_collection())
    if not counts:
        click.echo("no suppression list has an entry")
        return
    width = max(len("LIST"), *(len(name) for name in counts))
    click.echo(f"{'LIST'.ljust(width)}  ENTRIES")
    for name, count in counts.items():
        click.echo(f"{name.ljust(width)}  {count}")
@click.command("erase")
@_blueprint_option
@with_appcontext
@click.option("--email", default=None, help="The consumer's email address.")
@click.option("--mobile", default=None, help="The consumer's mobile number (10 digits; punctuation and +1 allowed).")
@_friendly_errors
def erase_command(email: str | None, mobile: str | None) -> None:
    """Erase a consumer: delete every lead of every source with this email or mobile, and refuse
    their posts from now on (contract section 11).  Prints counts, never the values."""
    if email is None and mobile is None:
        raise click.UsageError("give --email, --mobile or both")
    rt = runtime()
    settings = rt.settings
    try:
        report = erase_consumer(rt.database, email, mobile, leads_collection=settings.leads_collection,
                                sources_collection=settings.sources_collection,
                                erasures_collection=settings.erasures_collection, clock=settings.clock)
    except ValueError as exc:  # names the field, never the value
        raise click.BadParameter(str(exc)) from None
    names = {str(doc["_id"]): doc.get("name", "") for doc in rt.database[settings.sources_collection].find(
        {"_id": {"$in": [ObjectId(sid) for sid in report.removed]}}, {"name": 1})}
    click.echo(f"erasure {report.erasure_id}: {report.total} lead(s) removed")
    for source_id, count in report.removed.items():
        click.echo(f"  {source_id}  {count}  {names.get(source_id, '')}")


#: Every command, in the order ``flask pingtree-leads --help`` lists them (added to each blueprint's group).
COMMANDS: tuple[click.Command, ...] = (
    create_source_command, update_source_command, list_sources, rotate_key, activate, deactivate,
    ensure_indexes_command, purge_holds_command, migrate_storage_command,
    openapi_command, import_command, suppress_group, erase_command,
)
