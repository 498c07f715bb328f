"""Citizen ID numbers (GB 11643-1999), their pseudonym ``worker_ref`` and masked form.

The plain ID number goes no further than this module's callers at the edge:
past validation only ``worker_ref`` (a keyed hash) and ``id_masked`` travel.
"""

from __future__ import annotations

import hashlib
import hmac
import operator
import re
from dataclasses import dataclass, field
from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_SHAPE = re.compile(r"^[1-9][0-9]{16}[0-9X]$")
_EARLIEST_BIRTH = date(1900, 1, 1)


# A worker_ref is this prefix and 24 hex digits of a keyed hash (uniformly spread).
WORKER_REF_PREFIX = "w_"


class InvalidIdNumber(ValueError):
    """The text is not a valid 18-character resident ID number; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character for the first 17 digits."""
    if len(first17) != len(_WEIGHTS):
        raise ValueError("the check digit is computed over exactly 17 digits")
    total = sum(map(operator.mul, map(int, first17), _WEIGHTS))
    return _CHECK_CHARS[total % 11]


def normalise_id_number(raw: str, *, today: date | None = None) -> str:
    """Return the ID number with a final ``x`` upper-cased, or raise InvalidIdNumber."""
    if not isinstance(raw, str):
        raise InvalidIdNumber("id_number_type", "id_number must be a string")
    candidate = raw.strip().upper()
    if len(candidate) != 18:
        raise InvalidIdNumber("id_number_length", "id_number must be 18 characters")
    if not _SHAPE.match(candidate):
        raise InvalidIdNumber(
            "id_number_format", "id_number must be 17 digits and a digit or X as the 18th"
        )
    try:
        born = date(int(candidate[6:10]), int(candidate[10:12]), int(candidate[12:14]))
    except ValueError:
        raise InvalidIdNumber("id_number_birth_date", "id_number has no valid birth date") from None
    if not _EARLIEST_BIRTH <= born <= (today or date.today()):
        raise InvalidIdNumber("id_number_birth_date", "id_number has a birth date out of range")
    if check_digit(candidate[:17]) != candidate[17]:
        raise InvalidIdNumber("id_number_checksum", "id_number check digit does not match")
    return candidate


def mask_id_number(id_number: str) -> str:
    """First 6 and last 4 characters with ``*`` between: ``330302********1234``."""
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


def mask_card_number(card_no: str) -> str:
    """A card number with all but its first 2 and last 4 characters hidden."""
    if len(card_no) <= 6:
        return "*" * len(card_no)
    return card_no[:2] + "*" * (len(card_no) - 6) + card_no[-4:]


_CARD = re.compile(r"^[0-9A-Z]{9,20}$")
# Any region's health-code id as its QR carries it (URLs included): printable, 1–512.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
MAX_CODE_LENGTH = 512


class InvalidCode(ValueError):
    """A card number or health-code id of the wrong shape; ``code`` says which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def normalise_card_number(raw: str) -> str:
    """A social-security card number: 9–20 letters and digits, upper-cased."""
    candidate = raw.strip().upper() if isinstance(raw, str) else ""
    if not _CARD.match(candidate):
        raise InvalidCode("invalid_card_number", "ssc_card_no must be 9–20 letters and digits")
    return candidate


def normalise_health_code_id(raw: str) -> str:
    """A health-code id as its region issues it: 1–512 printable characters, URLs included."""
    candidate = raw.strip() if isinstance(raw, str) else ""
    if not 1 <= len(candidate) <= MAX_CODE_LENGTH or _CONTROL.search(candidate):
        raise InvalidCode(
            "invalid_health_code_id",
            f"health_code_id must be 1–{MAX_CODE_LENGTH} printable characters",
        )
    return candidate


@dataclass(frozen=True)
class Pseudonymiser:
    """Keyed hash (HMAC-SHA256) of identifiers; the key never leaves settings."""

    key: bytes = field(repr=False)  # never in a log line or a traceback
    # One keyed hash a purpose, its key and purpose already absorbed: a copy of it
    # hashes a value in about half the time of ``hmac.digest`` (which derives the
    # key's pads at every call), with the same result.
    _keyed: dict[bytes, hmac.HMAC] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        if len(self.key) < 16:
            raise ValueError("the worker_ref key must be at least 16 bytes")

    def worker_ref(self, id_number: str) -> str:
        """Stable pseudonymous reference for a normalised ID number."""
        return WORKER_REF_PREFIX + self._digest(b"worker_ref", id_number)[:24]

    def lookup_hash(self, purpose: str, value: str) -> str:
        """Keyed hash for looking a secret value up without storing it (card numbers)."""
        return self._digest(purpose.encode(), value)

    def _digest(self, purpose: bytes, value: str) -> str:
        base = self._keyed.get(purpose)
        if base is None:
            base = self._keyed[purpose] = hmac.new(self.key, purpose + b"\x00", hashlib.sha256)
        digest = base.copy()
        digest.update(value.encode())
        return digest.hexdigest()
