"""pingtree_leads: Pingtree's "Create Lead" API as a Flask blueprint on MongoDB."""

from __future__ import annotations

__version__ = "0.1.0"  # before the imports: openapi.py reads it

from pymongo.database import Database

from .blueprint import LeadsBlueprint, LeadsRuntime, create_blueprint
from .extension import PingtreeLeads
from .repository import LeadIndexError, LeadRepository
from .settings import Settings
from .sources import CreatedSource, create_source, rotate_api_key, set_source_active

__all__ = [
    "CreatedSource",
    "LeadIndexError",
    "LeadsBlueprint",
    "LeadsRuntime",
    "PingtreeLeads",
    "Settings",
    "create_blueprint",
    "create_source",
    "ensure_indexes",
    "rotate_api_key",
    "set_source_active",
]


def ensure_indexes(database: Database, leads_collection: str = Settings.leads_collection) -> None:
    """Create the unique indexes the endpoint relies on (idempotent; raises if refused)."""
    LeadRepository(database, leads_collection).ensure_indexes()
