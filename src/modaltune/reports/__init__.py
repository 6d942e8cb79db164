"""modaltune.reports."""
