"""The ``modaltune`` command line. Every command calls a documented Python function.

Sub-command groups register themselves here; user mistakes (``ModaltuneError``) are printed as one
line and exit with status 2, never as a traceback.
"""
from __future__ import annotations

import sys

import typer

from modaltune.errors import ModaltuneError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="modaltune: multi-modal, multi-task fine-tuning of slide foundation models.")
data_app = typer.Typer(no_args_is_help=True, help="Cohort data: simulate, import, validate, summarise.")
app.add_typer(data_app, name="data")


@app.command()
def doctor() -> None:
    """Print versions, optional extras, torch threads/devices and cache locations."""
    from modaltune.doctor import doctor_report

    typer.echo(doctor_report())


@app.command()
def extract(
    slides: str = typer.Option(..., "--slides", help="Folder of slides (.svs, .tif, .ndpi, ...) or one slide file."),
    out: str = typer.Option(..., "--out", help="Output folder: <slide>.h5, qc/, summary.json/.md."),
    encoder: str = typer.Option("efficientnet_lite0", "--encoder", help="Patch encoder (efficientnet_lite0, uni, uni2, conch_v15, gigapath, virchow2, hoptimus0, phikon)."),
    weights: str | None = typer.Option(None, "--weights", help="Local weights file/folder of the encoder."),
    mag: float = typer.Option(20.0, "--mag", help="Target magnification of patches."),
    mpp: float | None = typer.Option(None, "--mpp", help="Target µm/px of patches (overrides --mag)."),
    patch_size: int = typer.Option(256, "--patch-size", help="Patch side in px at the target resolution."),
    overlap: int = typer.Option(0, "--overlap", help="Overlap between neighbouring patches, px."),
    min_tissue: float = typer.Option(0.25, "--min-tissue", help="Minimum tissue fraction of a kept patch (0-1)."),
    mpp_overrides: str | None = typer.Option(None, "--mpp-overrides", help="CSV slide,mpp for slides without pixel size."),
    batch_size: int = typer.Option(64, "--batch-size"),
    workers: int = typer.Option(0, "--workers", help="Tile-reading worker processes."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip slides whose h5 is already complete."),
    no_tissue: str = typer.Option("write", "--no-tissue", help="'write' an empty h5 flagged no_tissue, or 'skip' it."),
    backend: str = typer.Option("auto", "--backend", help="auto (OpenSlide then tiffslide), openslide, tiffslide."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Run slides as Ray tasks: auto, local or ray://host:port."),
) -> None:
    """Whole-slide preprocessing: tissue detection, tiling and patch features to TRIDENT h5."""
    from modaltune.preprocess.pipeline import extract_features

    summary = extract_features(slides, out, encoder=encoder, weights=weights, magnification=mag, target_mpp=mpp,
                               patch_size=patch_size, overlap=overlap, min_tissue=min_tissue, mpp_overrides=mpp_overrides,
                               batch_size=batch_size, workers=workers, device=device, resume=resume, backend=backend,
                               no_tissue=no_tissue, ray_address=ray_address)
    t = summary.totals()
    typer.echo(f"{t['done']} done, {t['no_tissue']} no tissue, {t['skipped']} skipped, {t['failed']} failed; "
               f"{t['patches']} patches in {t['seconds']:.1f} s; summary: {out}/summary.md")
    for r in summary.slides:
        if r.status == "failed":
            typer.echo(f"failed: {r.slide}: {r.error}", err=True)
    if t["failed"]:
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``modaltune`` script."""
    try:
        app(args=argv, standalone_mode=False)
    except ModaltuneError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except typer.Exit as exc:  # pragma: no cover - typer control flow
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        return 130
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
