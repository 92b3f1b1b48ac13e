"""The Store seam: protocol, the in-memory implementation and helpers."""

from orloj_ray.store.base import Event, LabelSelector, ListPage, Store
from orloj_ray.store.memory import MemoryStore
from orloj_ray.store.selectors import parse_label_selector
from orloj_ray.store.util import mutate_status

__all__ = ["Event", "LabelSelector", "ListPage", "MemoryStore", "Store", "mutate_status", "parse_label_selector"]
