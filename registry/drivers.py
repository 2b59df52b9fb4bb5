"""Choosing the storage driver from the configuration.

Kept apart from the interface (``storage.py``), which every driver imports: the
factory names the drivers, so in the interface module it made a file cycle.
"""
from __future__ import annotations

from slipway import extras

from .storage import FilesystemStorage, Storage


def open_storage(config) -> Storage:
    driver = config.storage.driver
    if driver == "filesystem":
        return FilesystemStorage(config.storage_path)
    if driver == "s3":
        extras.require("s3", "The S3 storage driver (storage.driver: s3)")
        from .storage_s3 import S3Storage  # boto3 is loaded only by installations that use S3

        return S3Storage.from_config(config.storage)
    raise ValueError(f"unknown storage driver '{driver}' (use filesystem or s3)")
