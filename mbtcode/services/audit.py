"""Write audit rows in the same transaction as the change they describe."""

from __future__ import annotations

from typing import Any

from ..extensions import db
from ..models import AuditEvent, User


def record(
    action: str,
    *,
    actor: User | None,
    entity: str,
    entity_id: int | None = None,
    study_id: int | None = None,
    detail: dict[str, Any] | None = None,
    reason: str | None = None,
) -> AuditEvent:
    """Add one audit row to the current transaction."""
    event = AuditEvent(
        action=action,
        actor_id=actor.id if actor is not None else None,
        entity=entity,
        entity_id=entity_id,
        study_id=study_id,
        detail=detail or {},
        reason=reason,
    )
    db.session.add(event)
    return event
