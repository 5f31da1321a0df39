"""Filters: built-in policies and the Python filter API (see base.py)."""

from engine.filters.base import Filter, FilterContext, Reply, overrides

__all__ = ["Filter", "FilterContext", "Reply", "overrides"]
