"""Secrets at rest: random tokens, one-way hashes for checking them, encryption for what must be shown again."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from contextlib import contextmanager
from typing import Iterator

from cryptography.fernet import Fernet, InvalidToken
from peewee import TextField


class Cipher:
    """Encryption of secrets at rest with a key derived from the server secret (Fernet)."""

    def __init__(self, server_secret: str):
        key = hashlib.sha256(b"slipway-encryption-v1:" + server_secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ValueError("cannot decrypt: the server secret changed since this was stored") from None


class _Installed:
    """The cipher encrypted columns use: installed once at start (``configure``), swapped by tests
    (``using``). Columns are read and written deep inside peewee, where no cipher can be passed."""

    cipher: Cipher | None = None


def configure(server_secret: str) -> Cipher:
    """Derive the encryption key from the server secret and install it (called once at start)."""
    _Installed.cipher = Cipher(server_secret)
    return _Installed.cipher


@contextmanager
def using(cipher: Cipher) -> Iterator[Cipher]:
    """Install ``cipher`` for the duration of a block (an in-process test), then put back the previous one."""
    previous, _Installed.cipher = _Installed.cipher, cipher
    try:
        yield cipher
    finally:
        _Installed.cipher = previous


def cipher() -> Cipher:
    if _Installed.cipher is None:
        raise RuntimeError("slipway.crypto.configure() has not been called")
    return _Installed.cipher


def encrypt(plaintext: str) -> str:
    return cipher().encrypt(plaintext)


def decrypt(ciphertext: str) -> str:
    return cipher().decrypt(ciphertext)


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
