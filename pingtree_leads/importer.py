"""Importing a CSV file of leads into a source, through the endpoint's own code.

Every row is validated by ``schemas.validate_lead`` with the source's schema and
stored by ``LeadRepository.store_many`` (the same dedupe and idempotency as the
HTTP endpoint), in batches.  A row without a ``transaction_id`` gets one derived
from its content, so importing the same file again stores nothing new.  A dry run
asks ``LeadRepository.predict`` instead, which only reads: each row is judged
against the stored leads and the rows before it, and nothing is written.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import shlex
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO

from . import lenient, signals
from .caps import iso_utc
from .consent import CONSENT_FIELDS
from .erasure import erased_unblocked, taken_back_if_erased
from .errors import MESSAGES, LeadStatus
from .repository import LeadRepository, StoreResult, UnwrittenLeads, fingerprint, stored_lead_view
from .schemas import (
    DECLARED_FIELDS,
    EXTRA_NAME,
    LEAD_FIELDS,
    TRUSTED_FORM_FIELDS,
    LeadRejection,
    LeadSchema,
    ValidLead,
    own_spelling,
    validate_lead,
)
from .settings import Settings
from .sources import SourceConfig
from .suppression import SuppressionStore, lead_keys
from .validators import LeadValidators

#: How the import reports what the endpoint sends as signals: ``notify(signal, **kwargs)``.
Notify = Callable[..., None]

# reject_row: the data row number in the file (1 = first row after the header).
REJECT_COLUMNS = ("reject_row", "reject_status", "reject_reason")
# Outcome names in the summary, in the order they are printed.
OUTCOMES = ("accepted", "already_imported", *(s.value for s in (LeadStatus.DUPLICATE, LeadStatus.MISSING_FIELD,
                                                                LeadStatus.INVALID_FIELD, LeadStatus.CONFLICT,
                                                                LeadStatus.CAPPED)))


class ImportFileError(Exception):
    """The file cannot be imported at all (encoding, header); the message says why."""


class HostValidatorError(ImportFileError):
    """A host validator raised: the host's bug.  The message names the row and the exception
    type only (its message may hold the row's values)."""


@dataclasses.dataclass
class ImportSummary:
    counts: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        """The outcomes in order; one of its own (``suppressed``) after them when counted."""
        extra = {name: count for name, count in self.counts.items() if name not in OUTCOMES}
        return {**{name: self.counts.get(name, 0) for name in OUTCOMES}, **extra}

    @property
    def none_taken(self) -> bool:
        """The file had rows and not one was accepted or already imported (a failed import)."""
        return self.rows > 0 and not (self.counts["accepted"] or self.counts["already_imported"])


def parse_mapping(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--map col=field`` options as {column: field}."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        column, sep, field = pair.partition("=")
        if not sep or not column or not field:
            raise ImportFileError(f"--map takes COLUMN=FIELD, got {pair!r}")
        if field not in DECLARED_FIELDS and not EXTRA_NAME.fullmatch(field):
            raise ImportFileError(f"--map target {field!r} is not a lead field nor a valid extra field name")
        mapping[column] = field
    return mapping


#: Other names people give the lead fields, normalised as ``_squash`` does.
ALIASES: dict[str, str] = {
    **dict.fromkeys(("phone", "phonenumber", "cell", "cellphone", "mobilephone", "mobilenumber", "tel",
                     "telephone"), "mobile"),
    **dict.fromkeys(("mail", "emailaddress"), "email"),
    **dict.fromkeys(("zip", "postcode", "postalcode"), "zip_code"),
    **dict.fromkeys(("dob", "birthdate", "birthday"), "date_of_birth"),
    **dict.fromkeys(("fname", "givenname"), "first_name"),
    **dict.fromkeys(("lname", "surname", "familyname"), "last_name"),
    **dict.fromkeys(("street", "streetaddress", "addr", "address1"), "address"),
    "txid": "transaction_id",
    **{name.lower()[2:]: name for name in TRUSTED_FORM_FIELDS},  # trustedformtoken, ...
    # Jornaya's own names spelt otherwise (`LeadiD-Token`): leadid_token and universal_leadid are aliases.
    **dict.fromkeys(("leadidtoken", "universalleadid"), "jornaya_leadid"),
}
_FIELD_NAMES = (*LEAD_FIELDS, "transaction_id", *TRUSTED_FORM_FIELDS, *CONSENT_FIELDS)
#: Every name a column is compared with, normalised -> the field it stands for.
_KNOWN_NAMES: dict[str, str] = {**ALIASES, **{name.lower().replace("_", ""): name for name in _FIELD_NAMES}}
#: Abbreviations match only exactly (``name`` is not ``lname``).
_TYPO_TARGETS = [name for name in _KNOWN_NAMES if name not in ("fname", "lname", "txid", "tel", "cell", "mail", "addr")]


def _squash(name: str) -> str:
    """A column name compared without case, spaces, dashes or underscores."""
    return "".join(c for c in name.lower() if c not in " -_")


def _edits(a: str, b: str) -> int:
    """Characters changed between ``a`` and ``b`` along difflib's alignment (an edit distance)."""
    opcodes = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in opcodes if tag != "equal")


def likely_field(column: str) -> str | None:
    """The lead field a column name most likely means, if it is a variant or a typo of one.

    Exact after normalisation (``Email``, ``e-mail``, ``first name``, ``zipcode``) or a
    known alias (``phone``, ``zip``, ``dob``); otherwise within 2 edits of a field or an
    alias (1 for names of 4 letters, none for shorter ones: ``ip`` is not ``zip``), but
    never a name with a digit (``address2``) or a field with 2 or more characters added
    around it (``work_email``, ``email_domain``): those are other fields on purpose.
    """
    squashed = _squash(column)
    if squashed in _KNOWN_NAMES:
        return _KNOWN_NAMES[squashed]
    if any(c.isdigit() for c in squashed):
        return None
    for known in difflib.get_close_matches(squashed, _TYPO_TARGETS, n=3, cutoff=0.8):
        allowed = 0 if len(known) <= 3 else 1 if len(known) == 4 else 2
        if known in squashed and len(squashed) - len(known) >= 2:
            continue
        if _edits(squashed, known) <= allowed:
            return _KNOWN_NAMES[known]
    return None


def column_warnings(header: list[str], columns: list[str], mapping: Mapping[str, str]) -> list[str]:
    """A warning for each column that is read as an extra field but looks like a lead field."""
    warnings = []
    read_as = [own_spelling(target) for target in columns]  # Email is email (contract section 9)
    for name, target in zip(header, read_as, strict=True):
        if target in DECLARED_FIELDS or target in lenient.ALIASES or name in mapping:
            continue  # a field, or an alias every source reads as its field (phone, zip, dob)
        field = likely_field(name)
        if field is None or field in read_as:
            continue
        kept = ("is stored as the extra field " + repr(name) if EXTRA_NAME.fullmatch(name)
                else "is not a valid extra field name: every row with a value in it is rejected")
        warnings.append(f"column {name!r} {kept}; if it holds {field}, "
                        f"add --map {shlex.quote(f'{name}={field}')}")
    return warnings


def row_transaction_id(lead: ValidLead) -> str:
    """A transaction id derived from the lead as stored (after trimming and normalisation):
    the same lead imports once, whatever the column order, mapping or whitespace."""
    return "csv-" + fingerprint(lead)[:40]


def count_rows(path: Path) -> int:
    """Data rows in the file, blank lines not counted (the progress total; the summary's
    ``rows`` once imported); raises ImportFileError on a bad encoding."""
    with _open(path) as handle:
        rows = _checked_rows(csv.reader(handle), path)
        next(rows, None)  # the header
        return sum(1 for values in rows if any(v.strip() for v in values))


def _open(path: Path) -> IO[str]:
    try:
        return path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ImportFileError(f"cannot open {path}: {exc.strerror}") from None


def _checked_rows(reader: Iterator[list[str]], path: Path) -> Iterator[list[str]]:
    try:
        yield from reader
    except UnicodeDecodeError:
        raise ImportFileError(f"{path} is not UTF-8 text: save it as UTF-8 and import it again") from None
    except csv.Error as exc:
        raise ImportFileError(f"{path} is not valid CSV near line {getattr(reader, 'line_num', '?')}: {exc}") from None


def _header(reader: Iterator[list[str]], path: Path, mapping: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(the column names as in the file, the field each column maps to)."""
    header = next(reader, None)
    if not header or not any(name.strip() for name in header):
        raise ImportFileError(f"{path} has no header row: the first line must name the columns")
    header = [name.strip() for name in header]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated or "" in header:
        raise ImportFileError(f"{path}: header has blank or repeated column names: {', '.join(repeated) or '(blank)'}")
    unknown = sorted(set(mapping) - set(header))
    if unknown:
        raise ImportFileError(f"--map names columns not in the header: {', '.join(unknown)}")
    targets = [mapping.get(name, name) for name in header]
    read_as = [own_spelling(target) for target in targets]  # email and Email are one field
    clashing = sorted({t for t in read_as if read_as.count(t) > 1})
    if clashing:
        raise ImportFileError(f"more than one column maps to: {', '.join(clashing)}")
    return header, targets


def import_csv(
    path: Path,
    source: SourceConfig,
    repository: LeadRepository,
    settings: Settings,
    schema: LeadSchema,
    *,
    mapping: Mapping[str, str] | None = None,
    rejects: IO[str] | None = None,
    batch_size: int = 500,
    progress: Callable[[int], None] = lambda n: None,
    warn: Callable[[str], None] = lambda message: None,
    dry_run: bool = False,
    validators: LeadValidators | None = None,
    notify: Notify | None = None,
    suppressions: SuppressionStore | None = None,
) -> ImportSummary:
    """Import ``path`` into ``source``; returns the counts.  Raises ImportFileError or PyMongoError.

    With ``dry_run`` nothing is written to the database: each valid row is judged by
    ``LeadRepository.predict`` against the stored leads and the rows before it that
    would be stored, and the counts (and rejects) are those a real import would give now.

    ``validators`` (the host's) run on every row that passed the built-in rules, dry run
    included; ``notify(signal, **kwargs)`` is called as the endpoint sends its signals
    (accepted, duplicate, rejected), never in a dry run.

    ``suppressions``: for a source that checks suppression lists, a row on one is counted as
    ``suppressed`` (one read per batch; a row whose transaction id was already imported is
    still ``already_imported``, one more read per suppressed row).
    """
    if dry_run:
        notify = None
    summary = ImportSummary()
    checks_lists = suppressions is not None and bool(source.suppression_lists)
    if checks_lists:
        summary.counts[LeadStatus.SUPPRESSED.value] = 0  # in the summary of a source with lists, also when 0
    unwritten = UnwrittenLeads() if dry_run else None
    with _open(path) as handle:
        reader = csv.reader(handle)
        rows = _checked_rows(reader, path)
        header, columns = _header(rows, path, mapping or {})
        for message in column_warnings(header, columns, mapping or {}):
            warn(message)
        writer = None
        if rejects is not None:
            writer = csv.writer(rejects)
            writer.writerow([*header, *REJECT_COLUMNS])
        batch: list[tuple[int, list[str], ValidLead, str]] = []

        def reject(number: int, values: list[str], status: LeadStatus, reason: str,
                   fields: list[str] | None = None) -> None:
            summary.counts[status.value] += 1
            if notify is not None:
                if status is LeadStatus.DUPLICATE:
                    pass  # sent by flush(), which knows the transaction id and the matched fields
                elif status in (LeadStatus.MISSING_FIELD, LeadStatus.INVALID_FIELD):
                    notify(signals.lead_rejected, source=source.public(), lead_status=status.value,
                           fields=fields or [])
            if writer is not None:
                # A ragged row is cut or padded to the header, so the reject columns line up.
                cells = (values + [""] * len(columns))[: len(columns)]
                writer.writerow([*cells, number, status.value, reason])

        def flush() -> None:
            if not batch:
                return
            now = settings.clock()
            size = len(batch)
            if checks_lists and suppressions is not None:
                _drop_suppressed(batch, source, repository, suppressions, now, reject, summary)
            leads = [(lead, txid) for _, _, lead, txid in batch]
            results: list[StoreResult] = (
                [] if not leads else repository.store_many(source, leads, now) if unwritten is None
                else [repository.predict(source, lead, txid, now, unwritten=unwritten) for lead, txid in leads]
            )
            for (number, values, lead, _), result in zip(batch, results, strict=True):
                result = _unless_erased(repository, settings, source, lead, result, dry_run=unwritten is not None)
                if result.lead_status is LeadStatus.ACCEPT:
                    summary.counts["already_imported" if result.replayed else "accepted"] += 1
                    if (notify is not None and not result.replayed and result.lead_id is not None
                            and signals.listened(signals.lead_accepted)):
                        stored = stored_lead_view(lead, result.transaction_id, result.lead_id, now)
                        notify(signals.lead_accepted, source=source.public(), lead=stored)
                elif result.lead_status is LeadStatus.DUPLICATE:
                    matched = ", ".join(result.matched_on)
                    reject(number, values, LeadStatus.DUPLICATE, f"matches a stored lead on {matched}")
                    if notify is not None:
                        notify(signals.lead_duplicate, source=source.public(), transaction_id=result.transaction_id,
                               matched_on=list(result.matched_on))
                elif result.lead_status is LeadStatus.SUPPRESSED:
                    # An erased consumer (contract section 11), as a post is answered: no reason given.
                    reject(number, values, LeadStatus.SUPPRESSED, "not accepted")
                elif result.lead_status is LeadStatus.CAPPED and result.retry_at is not None:
                    # Over a cap of the source (caps.py): not stored; a later import may take it.
                    reject(number, values, LeadStatus.CAPPED, f"over the source's cap until {iso_utc(result.retry_at)}")
                else:
                    reject(number, values, LeadStatus.CONFLICT, MESSAGES[409])
            progress(size)
            batch.clear()

        for number, values in enumerate(rows, start=1):
            if not any(v.strip() for v in values):
                continue  # a blank line
            if len(values) != len(columns):
                reason = f"row has {len(values)} values but the header has {len(columns)}"
                reject(number, values, LeadStatus.INVALID_FIELD, reason)
                progress(1)
                continue
            fields = dict(zip(columns, values, strict=True))
            checked = validate_lead(fields, schema)
            if isinstance(checked, LeadRejection):
                reject(number, values, checked.status, _reason(checked), checked.fields)
                progress(1)
                continue
            transaction_id = checked.transaction_id or row_transaction_id(checked)
            try:
                refused = validators.run(checked.as_stored(transaction_id), source.public()) if validators else {}
            except Exception as exc:  # the host's bug: stop, naming the row, never its values
                raise HostValidatorError(f"a host validator raised {type(exc).__name__} on data row {number}; "
                                         "rows before it in the same batch were not stored") from None
            if refused:
                rejection = LeadRejection(LeadStatus.INVALID_FIELD, list(refused), refused)
                reject(number, values, rejection.status, _reason(rejection), rejection.fields)
                progress(1)
                continue
            batch.append((number, values, checked, transaction_id))
            if len(batch) >= batch_size:
                flush()
        flush()
    return summary


def _drop_suppressed(
    batch: list[tuple[int, list[str], ValidLead, str]], source: SourceConfig, repository: LeadRepository,
    suppressions: SuppressionStore, now: datetime, reject: Callable[..., None], summary: ImportSummary,
) -> None:
    """Take the rows on a list the source checks out of ``batch`` (one read for the batch):
    ``suppressed``, unless their transaction id was imported already (a replay comes first)."""
    keys = {number: lead_keys(lead) for number, _, lead, _ in batch}
    found = suppressions.matching(source.suppression_lists, [k for ks in keys.values() for k in ks], now, limit=0)
    if not found:
        return
    kept = []
    for row in batch:
        number, values, lead, txid = row
        if not found.intersection(keys[number]):
            kept.append(row)
            continue
        replay = repository.replay_of(source, lead, txid, now)
        if replay is not None and replay.lead_status is LeadStatus.ACCEPT:
            summary.counts["already_imported"] += 1
        elif replay is not None:
            reject(number, values, LeadStatus.CONFLICT, MESSAGES[409])
        else:
            reject(number, values, LeadStatus.SUPPRESSED, "not accepted")  # never the list's name
    batch[:] = kept


def _reason(rejection: LeadRejection) -> str:
    return "; ".join(f"{name}: {' '.join(messages)}" for name, messages in rejection.errors.items())



def _unless_erased(
    repository: LeadRepository, settings: Settings, source: SourceConfig, lead: ValidLead, result: StoreResult,
    *, dry_run: bool,
) -> StoreResult:
    """As a post: a new lead with an erased value its source holds no claim for is taken back and
    counted ``suppressed``; a dry run, which stored nothing, only reads."""
    database = repository.leads.database
    if not dry_run:
        return taken_back_if_erased(database, settings, source, lead, result)
    if result.lead_status is LeadStatus.ACCEPT and not result.replayed and erased_unblocked(database, settings,
                                                                                            source, lead):
        return StoreResult(LeadStatus.SUPPRESSED, result.transaction_id)
    return result
