"""Converters from each source's published format to a knowledge store (one module per source)."""
