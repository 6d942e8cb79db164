"""Method recipes: one file per method, registered by name (see :mod:`modaltune.methods.registry`)."""
from modaltune.methods.registry import build_method, get_method, list_methods, register_method

__all__ = ["build_method", "get_method", "list_methods", "register_method"]
