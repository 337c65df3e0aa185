"""pingtree_leads: Pingtree's "Create Lead" API as a Flask blueprint on MongoDB."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from . import signals
from .blueprint import LeadsBlueprint, create_blueprint
from .caps import Cap
from .erasure import ErasureReport, complete_pending_blocks, erase_consumer
from .extension import PingtreeLeads
from .migration import MigrationReport, migrate_storage
from .provisioning import create_source, rotate_api_key, set_source_active, set_suppression_lists, update_source
from .repository import LeadIndexError, LeadRepository, find_lead
from .runtime import EXTENSION_KEY, AppRuntimes, LeadsRuntime, get_runtime
from .settings import Settings
from .sources import CreatedSource, PublicSource
from .suppression import (
    SuppressionWrite,
    clear_suppression_list,
    ensure_suppression_indexes,
    import_suppressions,
    suppress,
    suppression_lists,
    unsuppress,
)
from .version import __version__

__all__ = [
    "EXTENSION_KEY",
    "AppRuntimes",
    "Cap",
    "CreatedSource",
    "ErasureReport",
    "LeadIndexError",
    "LeadsBlueprint",
    "LeadsRuntime",
    "MigrationReport",
    "PingtreeLeads",
    "PublicSource",
    "Settings",
    "SuppressionWrite",
    "__version__",
    "clear_suppression_list",
    "complete_pending_blocks",
    "create_blueprint",
    "create_source",
    "ensure_indexes",
    "ensure_suppression_indexes",
    "erase_consumer",
    "find_lead",
    "get_runtime",
    "import_suppressions",
    "migrate_storage",
    "purge_expired_holds",
    "rotate_api_key",
    "set_source_active",
    "set_suppression_lists",
    "signals",
    "suppress",
    "suppression_lists",
    "unsuppress",
    "update_source",
]


def ensure_indexes(database: Database[Any], leads_collection: str = Settings.leads_collection) -> None:
    """Create the unique indexes the endpoint relies on (idempotent; raises if refused)."""
    LeadRepository(database, leads_collection).ensure_indexes()


def purge_expired_holds(database: Database[Any], leads_collection: str = Settings.leads_collection) -> int:
    """Delete the pre-ping holds that have expired; returns how many.  On a server the TTL index
    (made by ``ensure_indexes``) does this within a minute; call it where there is none (mongomock)."""
    return LeadRepository(database, leads_collection).purge_expired_holds(Settings().clock())
