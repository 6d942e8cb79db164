"""modaltune.adapters."""
