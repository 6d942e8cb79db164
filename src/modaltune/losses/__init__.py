"""modaltune.losses."""
