"""Scan intake over HTTP: validate each item, produce accepted ones to their topic."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel

from services.api.deps import ContextDep, PrincipalDep
from services.api.errors import ApiError
from services.api.schemas import standalone_schema
from shared import topics
from shared.contract import Rejected, ScanIn, decode_json, parse_scan
from shared.service_layer.messages import DeadLetter, codes_in, identify

router = APIRouter(tags=["scans"])

MAX_BATCH = 1000
MAX_BODY_BYTES = 2 * 1024 * 1024


# The body is parsed by hand (one result per item, even for items that are not scans);
# the schema still tells clients, and the API fuzzing, what a scan and a batch look like.
_SCAN = standalone_schema(ScanIn)
_BATCH = {
    "title": "ScanBatch",
    "type": "object",
    "properties": {"scans": {"type": "array", "items": _SCAN, "maxItems": MAX_BATCH}},
    "required": ["scans"],
}
SCANS_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"anyOf": [_SCAN, _BATCH]}}},
    }
}


class ScanResult(BaseModel):
    scan_id: str | None
    status: str
    reason: str | None = None
    message: str | None = None


class ScanResults(BaseModel):
    results: list[ScanResult]


def _items(body: Any) -> list[Any]:
    if isinstance(body, dict) and "scans" in body:
        if not isinstance(body["scans"], list):
            raise ApiError(422, "invalid_request", "scans must be a list of scan objects")
        return list(body["scans"])
    if isinstance(body, dict):
        return [body]
    raise ApiError(422, "invalid_request", 'the body must be a scan or {"scans": [...]}')


@router.post("/scans", status_code=202, response_model=ScanResults, openapi_extra=SCANS_BODY)
async def post_scans(request: Request, context: ContextDep, principal: PrincipalDep) -> Any:
    """Accept one scan or a batch (≤ 1000); one result per item, in order."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"the body must be at most {MAX_BODY_BYTES} bytes")
    try:
        items = _items(decode_json(raw))
    except Rejected as problem:
        raise ApiError(400, problem.reason, problem.message) from None
    if len(items) > MAX_BATCH:
        raise ApiError(413, "batch_too_large", f"a batch holds at most {MAX_BATCH} scans")
    now = datetime.now(UTC)
    received_at = [("received_at", now.isoformat().encode())]
    # Counted here, added to the metrics once a label (a labels() lookup a scan was a
    # tenth of the API's CPU for a batch).
    outcomes: Counter[tuple[str, str]] = Counter()
    reasons: Counter[tuple[str]] = Counter()
    results: list[dict[str, Any]] = []
    by_topic: dict[str, list[tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]]] = {}
    rejected: list[tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]] = []
    codes = codes_in(items)
    try:
        resolved = await context.links.resolve_codes(codes) if codes else {}
    except Exception as error:
        raise ApiError(503, "unavailable", "the code links are unavailable; retry") from error
    for item in items:
        scan_id = item.get("scan_id") if isinstance(item, dict) else None
        scan_id = scan_id if isinstance(scan_id, str) else None
        original = orjson.dumps(item)
        try:
            scan = parse_scan(item)
            identity = identify(scan, context.pseudonymiser, resolved)
            if not principal.may_post(scan.kind, scan.enterprise_id):
                raise Rejected("not_permitted", f"the {principal.role} role may not post this scan")
        except Rejected as problem:
            results.append(
                {
                    "scan_id": scan_id,
                    "status": "rejected",
                    "reason": problem.reason,
                    "message": problem.message,
                }
            )
            letter = DeadLetter(
                problem.reason, problem.message, None, original, "http", None, None, now
            )
            rejected.append((None, original, letter.headers()))
            kind = item.get("kind") if isinstance(item, dict) else None
            label = kind if isinstance(kind, str) and kind in topics.INPUT_TOPICS else "unknown"
            outcomes[label, "rejected"] += 1
            reasons[(problem.reason,)] += 1
            continue
        key = identity.worker_ref.encode()
        by_topic.setdefault(topics.INPUT_TOPICS[scan.kind], []).append((key, original, received_at))
        results.append({"scan_id": scan.scan_id, "status": "accepted"})
        outcomes[scan.kind, "received"] += 1
    context.metrics.add_counts(context.metrics.scans_total, outcomes)
    context.metrics.add_counts(context.metrics.rejected_total, reasons)
    try:
        for topic, messages in by_topic.items():
            await context.publisher.publish(topic, messages)
        await context.publisher.publish(topics.REJECTED, rejected)
    except Exception as error:
        raise ApiError(
            503, "unavailable", "the scan log is unavailable; retry the batch"
        ) from error
    return {"results": results}
