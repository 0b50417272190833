"""The audit trail: who changed what, recorded in the transaction of the change.

`Actor` says who acts (the key and its kind, the request, the client's address); a
service passes it down and calls `record` inside the write transaction that makes the
change, so the change and its audit entry commit together or not at all. Entries are
only ever appended.
"""

from gateway.audit.trail import (
    DASHBOARD,
    SYSTEM,
    Action,
    Actor,
    ActorKind,
    Changes,
    diff,
    record,
)

__all__ = ["DASHBOARD", "SYSTEM", "Action", "Actor", "ActorKind", "Changes", "diff", "record"]
