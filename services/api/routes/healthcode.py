"""Colour updates pushed by the health-code platform or an integrator (contract v1.1)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from services.api.auth import Principal, Role
from services.api.deps import ContextDep, require
from services.api.errors import ApiError
from services.api.schemas import standalone_schema
from shared import topics
from shared.contract import HealthCodeUpdateIn, Rejected, decode_json, parse_health_update
from shared.service_layer.messages import DeadLetter, codes_in, identify
from shared.service_layer.ports import Message

router = APIRouter(tags=["health codes"])

MAX_UPDATES = 1000
HTTP_SOURCE = "http"


# The body is parsed by hand: strict JSON (text that cannot be kept, such as lone
# surrogates, is a 400 before anything is published), and one result per item, so one
# bad item (even one that is not an object) cannot reject the batch. The schema still
# tells clients, and the API fuzzing, its shape.
UPDATES_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "title": "HealthCodeUpdates",
                    "type": "object",
                    "properties": {
                        "updates": {
                            "type": "array",
                            "items": standalone_schema(HealthCodeUpdateIn),
                            "maxItems": MAX_UPDATES,
                        }
                    },
                    "required": ["updates"],
                }
            }
        },
    }
}


class UpdateResult(BaseModel):
    index: int
    status: Literal["accepted", "rejected"]
    reason: str | None = None
    message: str | None = None


class UpdateResults(BaseModel):
    results: list[UpdateResult]


def _updates(raw: bytes) -> list[Any]:
    try:
        body = decode_json(raw)
    except Rejected as problem:
        raise ApiError(400, problem.reason, problem.message) from None
    if not isinstance(body, dict) or not isinstance(body.get("updates"), list):
        raise ApiError(422, "invalid_request", 'the body must be {"updates": [...]}')
    if len(body["updates"]) > MAX_UPDATES:
        raise ApiError(413, "batch_too_large", f"a batch holds at most {MAX_UPDATES} updates")
    return list(body["updates"])


@router.post(
    "/healthcode/updates",
    status_code=202,
    response_model=UpdateResults,
    openapi_extra=UPDATES_BODY,
)
async def post_updates(
    request: Request,
    context: ContextDep,
    _: Annotated[Principal, Depends(require(Role.INTEGRATOR, Role.ADMIN))],
) -> Any:
    """Colour updates by ID number or linked code; one result per item, in order."""
    items = _updates(await request.body())
    now = datetime.now(UTC)
    codes = codes_in(items)
    try:
        resolved = await context.links.resolve_codes(codes) if codes else {}
    except Exception as error:
        raise ApiError(503, "unavailable", "the code links are unavailable; retry") from error
    results: list[dict[str, Any]] = []
    accepted: list[Message] = []
    rejected: list[Message] = []
    for index, item in enumerate(items):
        original = orjson.dumps(item)
        try:
            update = parse_health_update(item)
            identity = identify(update, context.pseudonymiser, resolved)
        except Rejected as problem:
            results.append(
                {
                    "index": index,
                    "status": "rejected",
                    "reason": problem.reason,
                    "message": problem.message,
                }
            )
            letter = DeadLetter(
                problem.reason, problem.message, None, original, HTTP_SOURCE, None, None, now
            )
            rejected.append((None, original, letter.headers()))
            context.metrics.rejected_total.labels(problem.reason).inc()
            continue
        headers = [("received_at", now.isoformat().encode())]
        accepted.append((identity.worker_ref.encode(), original, headers))
        results.append({"index": index, "status": "accepted"})
    try:
        await context.publisher.publish(topics.HEALTHCODE_UPDATES, accepted)
        await context.publisher.publish(topics.REJECTED, rejected)
    except Exception as error:
        raise ApiError(503, "unavailable", "the update log is unavailable; retry") from error
    context.metrics.health_updates_total.labels("received").inc(len(accepted))
    return {"results": results}
