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
    no link resolves it)."""
    if id_number is not None:
        try:
            return context.pseudonymiser.worker_ref(normalise_id_number(id_number))
        except InvalidIdNumber as problem:
            raise ApiError(422, problem.code, str(problem)) from None
    assert code is not None
    resolved = await context.links.resolve_codes([code.strip()])
    identity = resolved.get(code.strip())
    return identity.worker_ref if identity is not None else None
