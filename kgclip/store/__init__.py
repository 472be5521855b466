"""The knowledge store: the on-disk contract between data_prep and everything after it."""

from kgclip.store.format import FORMAT_VERSION
from kgclip.store.merge import merge_stores
from kgclip.store.reader import KnowledgeStore
from kgclip.store.splits import SplitConfig
from kgclip.store.validate import open_valid, validate_store
from kgclip.store.writer import StoreWriter

__all__ = ["FORMAT_VERSION", "KnowledgeStore", "SplitConfig", "StoreWriter", "merge_stores", "open_valid", "validate_store"]
