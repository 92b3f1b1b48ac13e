"""The Store seam: protocol, the in-memory implementation, ``open_store`` and helpers.

``PostgresStore`` lives in ``orloj_ray.store.postgres`` (imported on demand: it loads psycopg).
"""

from orloj_ray.store.base import Event, LabelSelector, ListPage, Store
from orloj_ray.store.factory import open_store
from orloj_ray.store.memory import MemoryStore
from orloj_ray.store.selectors import parse_label_selector
from orloj_ray.store.util import mutate_status

__all__ = ["Event", "LabelSelector", "ListPage", "MemoryStore", "Store", "mutate_status", "open_store",
           "parse_label_selector"]
