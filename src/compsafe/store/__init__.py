"""Results store: runs, per-item records and tidy metric rows in one SQLite file."""

from compsafe.store.schema import SCHEMA_VERSION, STATUSES, StoreError
from compsafe.store.sqlite import Store

STORE_FILE = "compsafe.sqlite"
"""The store's file name inside an output folder (eval's --out, a sweep's out)."""

__all__ = ["SCHEMA_VERSION", "STATUSES", "STORE_FILE", "Store", "StoreError"]
