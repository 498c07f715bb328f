"""The public contract's messages as pydantic models, and their validation.

``parse_scan`` and ``parse_health_update`` turn untrusted bytes or dicts into
validated models or raise ``Rejected`` with a reason code from a small, fixed
set (used as a metrics label, so it must stay bounded).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from shared.domain.vocabulary import HealthCode, Kind, Travel
from shared.identity import MAX_CODE_LENGTH, InvalidIdNumber, normalise_id_number

# RFC 3339 date-time with a mandatory offset ("Z" or "+08:00").
# Unicode category Cc: C0 controls, DEL and C1 controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)

REJECT_REASONS = (
    "invalid_json",
    "not_an_object",
    "missing_field",
    "invalid_field",
    "unknown_kind",
    "kind_topic_mismatch",
    "id_number_type",
    "id_number_length",
    "id_number_format",
    "id_number_birth_date",
    "id_number_checksum",
    "temperature_out_of_range",
    "invalid_timestamp",
    "invalid_health_code",
    "not_permitted",
    "unprocessable",
    "invalid_code",
    "unknown_code",
    "code_mismatch",
)


class Rejected(ValueError):
    """Input that cannot be accepted; ``reason`` is one of REJECT_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _rfc3339(value: Any) -> Any:
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 timestamp with an offset")
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 timestamp string")
    return value


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def aware_in_range(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a UTC offset")
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    if not EARLIEST <= in_utc < LATEST:
        raise ValueError("must lie between 2000 and 2100")
    return value


def printable(value: str) -> str:
    # NUL and other control characters (C0, DEL, C1) cannot be stored, logged or shown safely.
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _id_number(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidIdNumber("id_number_type", "id_number must be a string")
    return normalise_id_number(value)


Timestamp = Annotated[datetime, BeforeValidator(_rfc3339), AfterValidator(aware_in_range)]
IdNumber = Annotated[str, BeforeValidator(_id_number)]
ShortText = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(printable)]
# A health-code id (any region's, URLs included) or a social-security card number, as read.
Code = Annotated[str, Field(min_length=1, max_length=MAX_CODE_LENGTH), AfterValidator(printable)]
OverrideReason = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(printable)]


def _needs_a_worker(id_number: str | None, code: str | None) -> None:
    if id_number is None and code is None:
        raise ValueError("id_number or code is required")


class ScanIn(BaseModel):
    """A scan event as scanners and integrators send it (PRODUCT.md, "Scan event")."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    scan_id: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(printable)]
    kind: Kind
    # Exactly one of these names the worker (both may come if they agree).
    id_number: IdNumber | None = None
    code: Code | None = None
    occurred_at: Timestamp
    station: ShortText
    temperature_c: Annotated[float, Field(ge=30.0, le=45.0, strict=True)] | None = None
    health_code: HealthCode | None = None
    trip_id: ShortText | None = None
    enterprise_id: ShortText | None = None
    # Recorded although the decision before it said no: why.
    override_reason: OverrideReason | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> ScanIn:
        _needs_a_worker(self.id_number, self.code)
        missing = [name for name in _REQUIRED_BY_KIND[self.kind] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{self.kind} needs {', '.join(missing)}")
        return self


# The fields each kind of scan needs. Without a scanned colour a check goes by the
# platform's (contract v1.1).
_REQUIRED_BY_KIND: dict[Kind, tuple[str, ...]] = {
    Kind.DEPARTURE_CHECK: ("temperature_c",),
    Kind.ARRIVAL_CHECK: ("temperature_c",),
    Kind.BOARDING: ("trip_id",),
    Kind.CHECKIN: ("enterprise_id",),
}


class HealthCodeUpdateIn(BaseModel):
    """A colour change from the health-code platform (``healthcode.updates``)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id_number: IdNumber | None = None
    code: Code | None = None
    health_code: HealthCode
    as_of: Timestamp

    @model_validator(mode="after")
    def _a_worker(self) -> HealthCodeUpdateIn:
        _needs_a_worker(self.id_number, self.code)
        return self


def decode_json(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Rejected("invalid_json", "the message is not valid JSON") from None


def _reason_for(error: ValidationError) -> Rejected:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    kind = first["type"]
    context = first.get("ctx") or {}
    inner = context.get("error")
    if isinstance(inner, InvalidIdNumber):
        return Rejected(inner.code, str(inner))
    if kind == "missing":
        return Rejected("missing_field", f"{field} is required")
    if field == "kind":
        return Rejected("unknown_kind", f"kind must be one of {', '.join(Kind)}")
    if field == "temperature_c" and kind in ("greater_than_equal", "less_than_equal"):
        return Rejected("temperature_out_of_range", "temperature_c must be within 30.0–45.0")
    if field == "code":
        message = str(first["msg"]).removeprefix("Value error, ")
        return Rejected("invalid_code", f"code: {message}")
    if field in ("occurred_at", "as_of"):
        return Rejected("invalid_timestamp", f"{field} must be an RFC 3339 timestamp with offset")
    if field == "health_code":
        return Rejected(
            "invalid_health_code", f"health_code must be one of {', '.join(HealthCode)}"
        )
    if not field and kind == "value_error":
        # Model-level rule: fields a kind needs.
        return Rejected("missing_field", str(first["msg"]).removeprefix("Value error, "))
    message = str(first["msg"]).removeprefix("Value error, ")
    return Rejected("invalid_field", f"{field}: {message}" if field else message)


def parse_scan(payload: Any, *, expected_kind: str | None = None) -> ScanIn:
    """Validate a decoded scan; raise Rejected with the first problem found."""
    if not isinstance(payload, dict):
        raise Rejected("not_an_object", "a scan must be a JSON object")
    try:
        scan = ScanIn.model_validate(payload)
    except ValidationError as error:
        raise _reason_for(error) from None
    if expected_kind is not None and scan.kind != expected_kind:
        raise Rejected(
            "kind_topic_mismatch", f"a {scan.kind} scan arrived on the {expected_kind} topic"
        )
    return scan


def parse_health_update(payload: Any) -> HealthCodeUpdateIn:
    """Validate a decoded health-code update; raise Rejected with the first problem."""
    if not isinstance(payload, dict):
        raise Rejected("not_an_object", "a health-code update must be a JSON object")
    try:
        return HealthCodeUpdateIn.model_validate(payload)
    except ValidationError as error:
        raise _reason_for(error) from None


# --- manifests (POST /v1/manifests and the spreadsheet import) ------------------------

ManifestText = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(printable)]
ManifestName = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(printable)]
Moment = Annotated[AwareDatetime, AfterValidator(aware_in_range)]


class WorkerIn(BaseModel):
    """One worker of a manifest: who, for which enterprise, on which trip (or on their own)."""

    id_number: str
    name: ManifestName
    enterprise_id: ManifestText | None = None
    trip_id: ManifestText | None = None
    travel: Travel = Travel.ORGANISED
    # For a self-arranged journey: when the worker should reach the arrival recheck.
    expected_arrival: Moment | None = None

    @model_validator(mode="after")
    def _self_travel_has_no_trip(self) -> WorkerIn:
        if self.travel is Travel.SELF and self.trip_id is not None:
            raise ValueError("a worker travelling on their own (travel: self) has no trip_id")
        return self
