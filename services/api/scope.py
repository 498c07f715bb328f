"""What a token may read: a gate its own enterprise, a district-scoped supervisor its district.

Every read that names an enterprise or a worker asks here; lists pass
``principal.district`` to the adapter, which filters in SQL. What a token may
not read is "not found" to it, as if it did not exist.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from services.api.auth import Principal, Role
from services.api.deps import ApiContext


def plausible(identifier: str) -> bool:
    """Whether an id from a path could name anything (the manifest caps ids at 128)."""
    return len(identifier) <= 128 and not any(
        unicodedata.category(char) == "Cc" for char in identifier
    )


async def may_read_enterprise(
    context: ApiContext, principal: Principal, enterprise_id: str
) -> bool:
    """The enterprise exists (anything refers to it) and is this token's to read."""
    if not plausible(enterprise_id) or not principal.may_read_enterprise(enterprise_id):
        return False
    return await context.bureau.enterprise_visible(enterprise_id, district=principal.district)


def reads_every_worker(principal: Principal) -> bool:
    """Whether any worker is this token's to read (all roles but a gate and a
    district-scoped supervisor)."""
    return principal.role is not Role.GATE and not (
        principal.role is Role.SUPERVISOR and principal.district is not None
    )


async def may_read_worker(context: ApiContext, principal: Principal, view: dict[str, Any]) -> bool:
    """Whether the worker whose loop view this is is this token's to read: a gate's own
    enterprise's, a district-scoped supervisor's district's; anyone's for other roles."""
    if reads_every_worker(principal):
        return True
    if principal.role is Role.GATE:
        return principal.may_read_enterprise(view["enterprise_id"])
    assert principal.district is not None
    return await context.supervision.worker_in_district(view["worker_ref"], principal.district)
