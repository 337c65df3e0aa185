"""Signals for the host app's ping tree (blinker, as Flask's own signals).

The sender is always the Flask app; connect with ``signal.connect_via(app)``:

* ``lead_accepted(app, source=..., lead=...)``: once per newly stored lead, after
  MongoDB acknowledged the write (never for a replay, never in test mode); ``lead``
  holds ``lead_id``, ``transaction_id`` and the values as stored (``find_lead``'s shape);
* ``lead_duplicate(app, source=..., transaction_id=..., matched_on=[...])``;
* ``lead_rejected(app, source=..., lead_status=..., fields=[...])``: a 400 after the
  key check (missingField or invalidField, a host validator's refusal included).

``source`` is a ``PublicSource`` (``id`` as a 24-hex string, ``name``, its rules).
Signals are not durable: a receiver runs in the request, after the answer is decided,
and a crash of the process loses what it did not finish; docs/integration.md shows
the change-stream and outbox patterns for guaranteed delivery.  A receiver that
raises is logged (its exception type, never its message: it may hold PII) and changes
nothing: the answer and the stored lead stand, and the other receivers still run.
"Raises" means any exception, ``BaseException`` subclasses such as
``asyncio.CancelledError`` and ``GeneratorExit`` included; only ``KeyboardInterrupt``
and ``SystemExit`` (the process being stopped) propagate.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import NamedSignal, Namespace

logger = logging.getLogger("pingtree_leads")

_signals = Namespace()

lead_accepted = _signals.signal("pingtree-lead-accepted", doc="A lead was stored (sender: the Flask app).")
lead_duplicate = _signals.signal("pingtree-lead-duplicate", doc="A lead was a duplicate (sender: the Flask app).")
lead_rejected = _signals.signal("pingtree-lead-rejected", doc="A lead was refused with 400 (sender: the Flask app).")


def listened(signal: NamedSignal) -> bool:
    """True if ``signal`` has any receiver: check before building what it would carry."""
    return bool(signal.receivers)


def send(signal: NamedSignal, sender: Any, **kwargs: Any) -> None:
    """Call every receiver of ``signal`` for ``sender``; one that raises is logged and skipped."""
    if not listened(signal):
        return  # the common case costs one attribute read
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **kwargs)
        except (KeyboardInterrupt, SystemExit):
            raise  # the process is being stopped: not the receiver's bug to swallow
        except BaseException as exc:  # the host's bug, whatever its class (CancelledError,
            # GeneratorExit, its own BaseException): it must not change the answer or the stored lead
            name = getattr(receiver, "__qualname__", type(receiver).__name__)
            logger.error("receiver %s of %s raised %s; the answer and the stored lead stand",
                         name, signal.name, type(exc).__name__)
