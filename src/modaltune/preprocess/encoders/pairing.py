"""Does a run tile the way an encoder was trained? (tile size in px and magnification / µm per px)

Encoders are trained on one geometry (UNI: 256 px at 20x; CONCH v1.5 for TITAN: 512 px at 20x); fed
another, they still produce features, silently worse ones. :func:`pairing_problem` says what differs
in one line; :func:`check_pairing` warns with it (:class:`EncoderPairingWarning`) or, with
``strict``, raises :class:`ConfigError`. Encoders that declare no pairing (``tile_px`` None, e.g.
the ImageNet default) are never flagged.
"""
from __future__ import annotations

import warnings

from modaltune.errors import ConfigError

from .registry import PatchEncoderSpec

__all__ = ["EncoderPairingWarning", "pairing_problem", "check_pairing"]

_MPP_TOLERANCE = 0.10  # relative: scanners call 0.5 µm/px anything from 0.46 to 0.55


class EncoderPairingWarning(UserWarning):
    """A run tiles at a size or magnification its patch encoder was not trained with."""


def _fmt_mag(mag: float) -> str:
    return f"{mag:g}x"


def pairing_problem(spec: PatchEncoderSpec, patch_size: int, magnification: float | None = None,
                    target_mpp: float | None = None) -> str | None:
    """One line naming the mismatch between the run's tiles and ``spec``'s training pairs, or None.

    ``patch_size``: px at the target resolution; ``magnification`` (e.g. 20) or ``target_mpp``
    (µm/px; wins when given, as in tiling) is the run's resolution; an MPP within 10 % of the
    encoder's counts as the same. Accepted pairs: ``(spec.tile_px, spec.magnification)`` and ``spec.pairings``.
    """
    if spec.tile_px is None or spec.magnification is None:
        return None
    pairs = [(spec.tile_px, float(spec.magnification)), *[(int(p), float(m)) for p, m in spec.pairings]]
    if target_mpp is not None:
        run_mag = 10.0 / float(target_mpp)  # 0.5 µm/px = 20x, the convention of the specs' ``mpp``
        same_mag = [(p, m) for p, m in pairs if abs(10.0 / m / float(target_mpp) - 1.0) <= _MPP_TOLERANCE]
        run = f"{patch_size} px at {float(target_mpp):g} µm/px (~{_fmt_mag(round(run_mag, 1))})"
    else:
        if magnification is None:
            return None
        same_mag = [(p, m) for p, m in pairs if abs(m - float(magnification)) <= 1e-6 * m]
        run = f"{patch_size} px at {_fmt_mag(float(magnification))}"
    if any(p == int(patch_size) for p, _ in same_mag):
        return None
    trained = " or ".join(f"{p} px at {_fmt_mag(m)}" for p, m in pairs)
    return (f"patch encoder '{spec.name}' was trained on tiles of {trained} ({spec.mpp:g} µm/px at {_fmt_mag(spec.magnification)}); "
            f"this run tiles {run}")


def check_pairing(spec: PatchEncoderSpec, patch_size: int, magnification: float | None = None,
                  target_mpp: float | None = None, *, strict: bool = False) -> str | None:
    """Warn (one line, :class:`EncoderPairingWarning`) or, when ``strict``, raise :class:`ConfigError`
    if the run's tiles are not a pairing ``spec`` was trained with. Returns the problem or None."""
    problem = pairing_problem(spec, patch_size, magnification, target_mpp)
    if problem is None:
        return None
    fix = f"use --patch-size {spec.tile_px} --mag {spec.magnification:g}, the default for '{spec.name}' when both are left unset"
    if strict:
        raise ConfigError(problem, fix=f"{fix}, or drop --strict-pairing to run anyway")
    warnings.warn(f"{problem}; features may be worse ({fix})", EncoderPairingWarning, stacklevel=3)
    return problem
