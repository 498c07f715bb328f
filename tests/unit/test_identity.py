"""Citizen ID numbers (GB 11643-1999), their masked form and the keyed worker_ref."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.identity import (
    InvalidIdNumber,
    Pseudonymiser,
    mask_id_number,
    normalise_id_number,
)

TODAY = date(2020, 3, 2)
KEY = b"k" * 32


def with_check_digit(first17: str) -> str:
    """Append the ISO 7064 MOD 11-2 check character, computed from its definition."""
    total = sum(int(digit) * pow(2, 17 - position, 11) for position, digit in enumerate(first17))
    check = (12 - total % 11) % 11
    return first17 + ("X" if check == 10 else str(check))


def wrong_check_digit(id_number: str) -> str:
    right = id_number[-1]
    return id_number[:-1] + ("0" if right != "0" else "1")


def rejection_code(raw) -> str:
    with pytest.raises(InvalidIdNumber) as rejected:
        normalise_id_number(raw, today=TODAY)
    return rejected.value.code


# --- valid numbers -------------------------------------------------------------------------


def test_the_standards_own_example_with_a_final_x_is_valid():
    assert with_check_digit("11010519491231002") == "11010519491231002X"
    assert normalise_id_number("11010519491231002X", today=TODAY) == "11010519491231002X"


def test_a_final_lower_case_x_is_normalised_to_upper_case():
    assert normalise_id_number("44030519880701008x", today=TODAY) == "44030519880701008X"


@pytest.mark.parametrize(
    "first17",
    [
        "33030219900302123",  # Wenzhou, a worker born 1990
        "52010319851115201",  # Guiyang
        "51132219780607003",  # Sichuan
        "41272619990101457",  # Henan
    ],
)
def test_numbers_with_the_right_check_digit_are_valid(first17):
    id_number = with_check_digit(first17)

    assert normalise_id_number(id_number, today=TODAY) == id_number


def test_the_earliest_and_latest_birth_dates_are_valid():
    oldest = with_check_digit("11010519000101001")
    born_today = with_check_digit("11010520200302001")

    assert normalise_id_number(oldest, today=TODAY) == oldest
    assert normalise_id_number(born_today, today=TODAY) == born_today


def test_the_29th_of_february_of_a_leap_year_is_a_birth_date():
    id_number = with_check_digit("11010520000229001")

    assert normalise_id_number(id_number, today=TODAY) == id_number


# --- invalid numbers -----------------------------------------------------------------------


@pytest.mark.parametrize("first17", ["11010519491231002", "33030219900302123", "52010319851115201"])
def test_a_wrong_check_digit_is_refused(first17):
    assert rejection_code(wrong_check_digit(with_check_digit(first17))) == "id_number_checksum"


@pytest.mark.parametrize(
    "birth_date",
    ["19900230", "19901301", "19900001", "19900100", "19000229", "19910229"],
    ids=["feb-30", "month-13", "month-00", "day-00", "1900-not-leap", "1991-not-leap"],
)
def test_an_impossible_birth_date_is_refused(birth_date):
    id_number = with_check_digit(f"330302{birth_date}123")

    assert rejection_code(id_number) == "id_number_birth_date"


def test_a_birth_date_in_the_future_is_refused():
    tomorrow = with_check_digit("33030220200303123")

    assert rejection_code(tomorrow) == "id_number_birth_date"


def test_a_birth_date_before_1900_is_refused():
    id_number = with_check_digit("33030218991231123")

    assert rejection_code(id_number) == "id_number_birth_date"


@pytest.mark.parametrize(
    "raw",
    ["", "11010519491231002", "11010519491231002X0", "330302900302123"],
    ids=["empty", "17-characters", "19-characters", "old-15-digit-number"],
)
def test_a_number_of_the_wrong_length_is_refused(raw):
    assert rejection_code(raw) == "id_number_length"


@pytest.mark.parametrize(
    "raw",
    ["1101051949123100AX", "11010519491231002A", "X10105194912310021", "110105-949123-002X"],
    ids=["letter-inside", "letter-at-end", "x-at-start", "punctuation"],
)
def test_letters_other_than_a_final_x_are_refused(raw):
    assert rejection_code(raw) == "id_number_format"


def test_a_leading_zero_is_refused():
    id_number = with_check_digit("01010519491231002")

    assert rejection_code(id_number) == "id_number_format"


@pytest.mark.parametrize("raw", [None, 110105194912310020])
def test_a_value_that_is_not_text_is_refused(raw):
    assert rejection_code(raw) == "id_number_type"


@pytest.mark.parametrize("offset", [0xFF10, 0x0660], ids=["full-width", "arabic-indic"])
def test_digits_other_than_ascii_digits_are_refused(offset):
    # Only 0-9 (and a final X) make an ID number. A look-alike in another script's digits
    # must not pass as a second, differently pseudonymised identity of the same person.
    ascii_number = "11010519491231002X"
    middle = "".join(chr(offset + int(digit)) for digit in ascii_number[1:17])
    look_alike = ascii_number[0] + middle + ascii_number[17]

    with pytest.raises(InvalidIdNumber):
        normalise_id_number(look_alike, today=TODAY)


def test_an_invalid_number_is_a_value_error_with_a_message():
    with pytest.raises(ValueError, match="check digit"):
        normalise_id_number(wrong_check_digit("11010519491231002X"), today=TODAY)


# --- masking -------------------------------------------------------------------------------


def test_the_masked_number_shows_the_first_6_and_last_4_characters():
    assert mask_id_number("330302199003021234") == "330302********1234"


def test_the_masked_number_keeps_a_final_x():
    assert mask_id_number("11010519491231002X") == "110105********002X"


def test_the_masked_number_hides_the_birth_date():
    masked = mask_id_number("330302199003021234")

    assert len(masked) == 18
    assert "19900302" not in masked


# --- pseudonymiser -------------------------------------------------------------------------


def test_the_worker_ref_is_stable():
    id_number = "11010519491231002X"

    assert Pseudonymiser(KEY).worker_ref(id_number) == Pseudonymiser(KEY).worker_ref(id_number)


def test_the_worker_ref_differs_by_key():
    id_number = "11010519491231002X"

    assert Pseudonymiser(b"a" * 32).worker_ref(id_number) != Pseudonymiser(b"b" * 32).worker_ref(
        id_number
    )


def test_different_people_get_different_worker_refs():
    pseudonymiser = Pseudonymiser(KEY)

    assert pseudonymiser.worker_ref("11010519491231002X") != pseudonymiser.worker_ref(
        "330302199003021234"
    )


def test_the_worker_ref_is_not_a_plain_hash_of_the_id_number():
    id_number = "11010519491231002X"
    worker_ref = Pseudonymiser(KEY).worker_ref(id_number)

    for plain in (hashlib.sha256, hashlib.md5, hashlib.sha1):
        digest = plain(id_number.encode()).hexdigest()
        assert worker_ref != digest
        assert worker_ref.removeprefix("w_") not in digest


def test_the_worker_ref_never_contains_the_id_number_or_its_parts():
    id_number = "11010519491231002X"
    worker_ref = Pseudonymiser(KEY).worker_ref(id_number)

    assert id_number not in worker_ref
    assert id_number.lower() not in worker_ref.lower()
    assert "19491231" not in worker_ref


def test_a_key_shorter_than_16_bytes_is_refused():
    with pytest.raises(ValueError):
        Pseudonymiser(b"k" * 15)


def test_a_16_byte_key_is_accepted():
    assert Pseudonymiser(b"k" * 16).worker_ref("11010519491231002X").startswith("w_")


def test_lookup_hashes_are_keyed_and_separated_by_purpose():
    pseudonymiser = Pseudonymiser(KEY)
    card_no = "A12345678"

    assert pseudonymiser.lookup_hash("ssc_card_no", card_no) == pseudonymiser.lookup_hash(
        "ssc_card_no", card_no
    )
    assert pseudonymiser.lookup_hash("ssc_card_no", card_no) != pseudonymiser.lookup_hash(
        "health_code_id", card_no
    )
    assert (
        pseudonymiser.lookup_hash("ssc_card_no", card_no)
        != hashlib.sha256(card_no.encode()).hexdigest()
    )


@given(value=st.text(max_size=600), purpose=st.sampled_from(["ssc_card", "health_code"]))
def test_hashes_are_hmac_sha256_of_the_purpose_and_the_value_as_stored_data_expects(value, purpose):
    # Stored worker_refs and code hashes were made so: a faster way to compute them must
    # give the same, whatever was hashed before with the same Pseudonymiser.
    pseudonymiser = Pseudonymiser(KEY)
    pseudonymiser.lookup_hash("health_code", "warm up the other purpose")

    expected = hmac.digest(KEY, purpose.encode() + b"\x00" + value.encode(), hashlib.sha256)
    assert pseudonymiser.lookup_hash(purpose, value) == expected.hex()
    assert pseudonymiser.lookup_hash(purpose, value) == expected.hex()
    reference = hmac.digest(KEY, b"worker_ref\x00" + value.encode(), hashlib.sha256).hex()
    assert pseudonymiser.worker_ref(value) == "w_" + reference[:24]


def test_the_key_is_not_in_the_repr():
    assert "kkkk" not in repr(Pseudonymiser(KEY))
