"""Start-up noise of the command line: Lightning's banners and known-harmless warnings.

Without ``--verbose`` the CLI hides, in this process, what a user cannot act on: Lightning's
accelerator lines ("GPU available: ...", "TPU available: ...", "HPU available: ..."), its
LitLogger/tips lines, the "modules in eval mode" summary warning (a frozen backbone is in eval mode
on purpose) and torch's ``weights_only`` FutureWarnings. They still reach ``run.log`` of a run
folder at INFO/WARNING through the ``lightning`` loggers' file handler when one is attached.
"""
from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_startup", "is_verbose", "NOISE"]

#: set by :func:`quiet_startup` (the CLI's ``--verbose``); the engine keeps Lightning's INFO lines
#: while it runs only when True
_VERBOSE = False


def is_verbose() -> bool:
    """Whether the user asked for Lightning's start-up lines (``--verbose``)."""
    return _VERBOSE

#: message regexes of warnings hidden without --verbose (each harmless for modaltune's use)
NOISE = (
    r".*module(?:s|\(s\))? in eval mode.*",  # "Found 47 module(s) in eval mode" (frozen backbone)
    r".*weights_only.*",
    r".*LeafSpec.*",
    r".*does not have many workers.*",
    r".*smaller than the logging interval.*",
    r".*litlogger.*",
    r".*[Tt]ip:.*",
)


class _DropBanners(logging.Filter):
    """Drop Lightning's device banners and tips from console handlers (INFO records only)."""

    WORDS = ("available:", "LOCAL_RANK", "💡", "Tip:", "litlogger", "LitLogger")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not any(w in record.getMessage() for w in self.WORDS)


def quiet_startup(verbose: bool = False) -> None:
    """Hide the noise listed in :data:`NOISE` and Lightning's INFO banners unless ``verbose``."""
    global _VERBOSE
    _VERBOSE = bool(verbose)
    if verbose:
        return
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning"):
        lg = logging.getLogger(name)
        lg.addFilter(_DropBanners())
        for h in lg.handlers:
            h.addFilter(_DropBanners())
