"""Finding the worker a request names, by ID number or by a code they show."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from services.api.deps import ApiContext
from services.api.errors import ApiError
from shared.contract import printable
from shared.identity import MAX_CODE_LENGTH, InvalidIdNumber, normalise_id_number

Text = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(printable)]
IdNumberText = Text
Code = Annotated[str, Field(min_length=1, max_length=MAX_CODE_LENGTH), AfterValidator(printable)]


async def find_worker(
    context: ApiContext, *, id_number: str | None, code: str | None
) -> str | None:
    """The worker_ref named by an ID number (422 if malformed) or a linked code (None if
    no link resolves it); given both, they must name one worker (422 ``code_mismatch``)."""
    by_id = None
    if id_number is not None:
        try:
            by_id = context.pseudonymiser.worker_ref(normalise_id_number(id_number))
        except InvalidIdNumber as problem:
            raise ApiError(422, problem.code, str(problem)) from None
        if code is None:
            return by_id
    assert code is not None
    resolved = await context.links.resolve_codes([code.strip()])
    identity = resolved.get(code.strip())
    if identity is not None and by_id is not None and identity.worker_ref != by_id:
        raise ApiError(422, "code_mismatch", "the ID number and the code name different workers")
    return identity.worker_ref if identity is not None else None
