"""Secrets at rest: random tokens, one-way hashes for checking them, encryption for what must be shown again."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken
from peewee import TextField

_fernet: Fernet | None = None


def configure(server_secret: str) -> None:
    """Derive the encryption key from the server secret (called once at start)."""
    global _fernet
    key = hashlib.sha256(b"slipway-encryption-v1:" + server_secret.encode()).digest()
    _fernet = Fernet(base64.urlsafe_b64encode(key))


def encrypt(plaintext: str) -> str:
    if _fernet is None:
        raise RuntimeError("slipway.crypto.configure() has not been called")
    return _fernet.encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    if _fernet is None:
        raise RuntimeError("slipway.crypto.configure() has not been called")
    try:
        return _fernet.decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise ValueError("cannot decrypt: the server secret changed since this was stored") from None


class EncryptedTextField(TextField):
    """A text column kept encrypted at rest: Python reads and writes plaintext, the database holds a
    Fernet token (AES-128-CBC + HMAC-SHA256, key derived from the server secret). Tokens differ at
    every write, so such a column cannot be searched or compared in SQL: keep it out of WHERE clauses."""

    def db_value(self, value):
        return None if value is None else encrypt(value)

    def python_value(self, value):
        return None if value is None else decrypt(value)


def new_token(length: int = 40, alphabet: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def hash_token(token: str) -> str:
    """A one-way hash for high-entropy tokens (a slow KDF adds nothing for 200+ random bits)."""
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
