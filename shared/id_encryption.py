"""Full ID numbers, encrypted for audited admin recovery (Fernet, rotatable keys).

The plain number is never stored; where an admin must recover it, PostgreSQL
holds only this ciphertext, made with the first key of
``RETURNLOOP_ID_ENCRYPTION_KEYS`` and readable with any key listed there.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.settings import Settings, SettingsError


class IdNumberUnreadable(Exception):
    """No configured key decrypts this ciphertext (a key was dropped too early)."""


class IdNumberCipher:
    """Encrypts with the current (first) key; decrypts and rotates with any key."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> IdNumberCipher | None:
        """The cipher for ``RETURNLOOP_ID_ENCRYPTION_KEYS``; None when it is unset."""
        if settings.id_encryption_keys is None:
            return None
        keys = [
            key.strip().encode()
            for key in settings.id_encryption_keys.get_secret_value().split(",")
            if key.strip()
        ]
        try:
            return cls(keys)
        except ValueError as problem:
            raise SettingsError(
                "RETURNLOOP_ID_ENCRYPTION_KEYS must be comma-separated Fernet keys "
                "(32 url-safe base64-encoded bytes each, e.g. from "
                f"`python -c 'from cryptography.fernet import Fernet; "
                f"print(Fernet.generate_key().decode())'`): {problem}"
            ) from None

    def encrypt(self, id_number: str) -> str:
        return self._fernet.encrypt(id_number.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise IdNumberUnreadable("no configured key decrypts this ID number") from None

    def rotate(self, ciphertext: str) -> str:
        """The same number, encrypted with the current key."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise IdNumberUnreadable("no configured key decrypts this ID number") from None
