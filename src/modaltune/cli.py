"""The ``modaltune`` command line. Every command calls a documented Python function.

Sub-command groups register themselves here; user mistakes (``ModaltuneError``) are printed as one
line and exit with status 2, never as a traceback.
"""
from __future__ import annotations

import sys

import typer

from modaltune.errors import ModaltuneError

# exit statuses (documented in the help of extract and benchmark, and in docs/training.md, docs/preprocess.md)
EXIT_ITEMS_FAILED = 1  # the run finished and wrote its tables, but a slide / unit failed
EXIT_USER = 2  # a user mistake (ModaltuneError): config, input, another run holds --out
EXIT_DISK = 3  # the output disk is full, over quota or read-only (DiskError)

app = typer.Typer(add_completion=False, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                  help="modaltune: multi-modal, multi-task fine-tuning of slide foundation models.")
data_app = typer.Typer(no_args_is_help=True, help="Cohort data: simulate, import, validate, summarise.")
app.add_typer(data_app, name="data")


def _version_callback(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            v = metadata.version("modaltune")
        except metadata.PackageNotFoundError:  # source checkout on PYTHONPATH without an install
            v = "unknown (not installed)"
        typer.echo(f"modaltune {v}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Lightning's start-up lines and library warnings."),
) -> None:
    """modaltune: multi-modal, multi-task fine-tuning of slide foundation models."""
    from modaltune.quiet import quiet_startup

    quiet_startup(verbose)


def _auto_report(run_dir) -> None:
    """The report at the end of `benchmark` / `demo`: a failure costs one warning line, never the run."""
    try:
        from modaltune.reports import build_report

        typer.echo(f"report: {build_report(run_dir)}")
    except Exception as exc:  # noqa: BLE001 - the run's tables are written; the report is extra
        typer.echo(f"warning: report not written for {run_dir}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (retry: modaltune report {run_dir})", err=True)


def _print_results(results, title: str, run_dir) -> None:
    """Mean ± std per method of the shown metrics (as `demo` prints), titled, with the protocol line."""
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from modaltune.demo import results_table
    from modaltune.evaluation.metrics import METRICS
    from modaltune.reports.run_files import load_run

    kinds = {}
    for task, metric in zip(results["task"], results["metric"]):
        if metric in METRICS:
            kinds.setdefault(task, METRICS[metric].kind)
    table = results_table(results, kinds)
    run = load_run(Path(run_dir))
    t = Table(title=f"[bold]{title}[/bold]" + (f" [red]{run.label}[/red]" if run.label else ""), caption=run.protocol, caption_justify="left")
    t.add_column("method")
    for c in table.columns:
        t.add_column(c, justify="right")
    for method, row in table.iterrows():
        t.add_row(str(method), *[str(v) for v in row.tolist()])
    Console().print(t)


def _print_metrics(metrics, title: str, caption: str) -> None:
    """A rich table of a metrics table (``modaltune.training.scoring``): one row per (fold,) task,
    one column per metric; with several folds a mean ± std row (ddof 0) per task follows."""
    import math

    from rich.console import Console
    from rich.table import Table

    from modaltune.training.scoring import mean_over_folds

    def fmt(v: float) -> str:
        return "n/a" if not math.isfinite(v) else f"{v:.3f}"

    names = list(dict.fromkeys(metrics["metric"]))
    by_fold = "fold" in metrics.columns
    t = Table(title=f"[bold]{title}[/bold]", caption=caption, caption_justify="left")
    for c in (["fold"] if by_fold else []) + ["task", "n"]:
        t.add_column(c, justify="right" if c == "n" else "left")
    for c in names:
        t.add_column(c, justify="right")
    keys = ["fold", "task"] if by_fold else ["task"]
    for key, g in metrics.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        vals = dict(zip(g["metric"], g["value"]))
        t.add_row(*[str(k) for k in key], str(int(g["n_used"].iloc[0])), *[fmt(vals[m]) if m in vals else "" for m in names])
    if by_fold and metrics["fold"].nunique() > 1:
        summ = mean_over_folds(metrics)
        for task, g in summ.groupby("task", sort=False):
            vals = {r.metric: f"{fmt(r.mean)} ± {fmt(r.std)}" for r in g.itertuples()}
            t.add_row("mean ± std", str(task), "", *[vals.get(m, "") for m in names])
    console = Console()
    if not console.is_terminal:  # a log or pipe: rich's default 80 columns would cut metric names
        console = Console(width=140)
    console.print(t)
    for r in metrics[metrics["reason"].astype(str).str.len() > 0].itertuples():
        typer.echo(f"{r.task} {r.metric}" + (f" (fold {r.fold})" if by_fold else "") + f": n/a, {r.reason}")


@app.command()
def doctor() -> None:
    """Print versions, optional extras, torch threads/devices and cache locations."""
    from modaltune.doctor import doctor_report

    typer.echo(doctor_report())


@app.command("methods")
def methods_cmd(
    params: str | None = typer.Option(None, "--params", metavar="NAME", help="Print the parameters of method NAME: name, type, default, meaning."),
) -> None:
    """List the registered methods (config ``name``), their kind, modalities and what they are."""
    from modaltune.methods.registry import method_table, params_text

    typer.echo(params_text(params) if params else method_table())


@app.command()
def extract(
    slides: str = typer.Option(..., "--slides", help="Folder of slides (.svs, .tif, .ndpi, ...) or one slide file."),
    out: str = typer.Option(..., "--out", help="Output folder: <slide>.h5, qc/, summary.json/.md."),
    encoder: str = typer.Option("efficientnet_lite0", "--encoder", help="Patch encoder (efficientnet_lite0, uni, uni2, conch_v1, conch_v15, gigapath, virchow2, hoptimus0, hoptimus1, phikon, phikon_v2, ctranspath; `modaltune doctor` lists what is usable)."),
    encoder_config: str | None = typer.Option(None, "--encoder-config", help="JSON/YAML of your own encoder: builder 'module:function', weights, mean/std, tile_px, magnification (docs/preprocess.md)."),
    weights: str | None = typer.Option(None, "--weights", help="Local weights file/folder of the encoder."),
    mag: float | None = typer.Option(None, "--mag", help="Target magnification of patches (default: the encoder's, 20x for all built-ins)."),
    mpp: float | None = typer.Option(None, "--mpp", help="Target µm/px of patches (overrides --mag)."),
    patch_size: int | None = typer.Option(None, "--patch-size", help="Patch side in px at the target resolution (default: the encoder's training tile, e.g. 512 for conch_v15; 256 when it declares none)."),
    strict_pairing: bool = typer.Option(False, "--strict-pairing", help="Refuse a patch size / magnification the encoder was not trained with (default: warn)."),
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
    features_dtype: str = typer.Option("float32", "--features-dtype", help="Stored feature dtype: float32, or float16 (half the disk)."),
    qc: bool = typer.Option(True, "--qc/--no-qc", help="Write QC thumbnails and tissue GeoJSON (QuPath) under OUT/qc."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars per slide and overall."),
    mask_long_side: int = typer.Option(2048, "--mask-long-side", help="Long side (px) of the low-resolution image tissue is detected on."),
    slide_encoder: str | None = typer.Option(None, "--slide-encoder", help="Also store a slide embedding per h5 (gigapath, titan, small_transformer, abmil, transmil)."),
    slide_encoder_checkpoint: str | None = typer.Option(None, "--slide-encoder-checkpoint", help="Local weights of the slide encoder (never downloaded)."),
    slide_encoder_random_init: bool = typer.Option(False, "--slide-encoder-random-init", help="Build the slide encoder with seeded random weights (tests; explicit)."),
) -> None:
    """Whole-slide preprocessing: tissue detection, tiling and patch features to TRIDENT h5.

    Exit status: 0 all slides done/skipped; 1 a slide failed or was not processed; 2 a usage or
    config error, or another run holds --out; 3 the disk is full, over quota or read-only.
    """
    import warnings

    from modaltune.preprocess.encoders import EncoderPairingWarning
    from modaltune.preprocess.pipeline import extract_features

    def one_line(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, EncoderPairingWarning):  # a user-facing fact, not a code location
            typer.echo(f"warning: {message}", err=True)
        else:
            show(message, category, filename, lineno, file, line)

    show = warnings.showwarning
    warnings.showwarning = one_line
    try:
        summary = extract_features(slides, out, encoder=encoder, weights=weights, magnification=mag, target_mpp=mpp,
                                   patch_size=patch_size, overlap=overlap, min_tissue=min_tissue, mpp_overrides=mpp_overrides,
                                   batch_size=batch_size, workers=workers, device=device, resume=resume, backend=backend,
                                   no_tissue=no_tissue, ray_address=ray_address, features_dtype=features_dtype, save_qc=qc,
                                   progress=progress, mask_long_side=mask_long_side, slide_encoder=slide_encoder,
                                   slide_encoder_checkpoint=slide_encoder_checkpoint, random_init=slide_encoder_random_init,
                                   encoder_config=encoder_config, strict_pairing=strict_pairing)
    finally:
        warnings.showwarning = show
    t = summary.totals()
    typer.echo(f"{t['done']} done, {t['no_tissue']} no tissue, {t['skipped']} skipped, {t['failed']} failed; "
               f"{t['patches']} patches in {t['seconds']:.1f} s; summary: {out}/summary.md")
    for r in summary.slides:
        if r.status == "failed":
            typer.echo(f"failed: {r.slide}: {r.error}", err=True)
    for r in summary.slides:
        if r.status == "not_processed":
            typer.echo(f"not processed: {r.slide}: {r.error}", err=True)
    if t["failed"] or t["not_processed"]:
        raise typer.Exit(EXIT_ITEMS_FAILED)


# ---------------------------------------------------------------- data commands (modaltune.data.workflows)
import_app = typer.Typer(no_args_is_help=True, help="Import a cohort (public TCGA tables from the shared folder, or your own files) into a cohort directory.")
data_app.add_typer(import_app, name="import")

_SHARED_HELP = "Folder holding data/tcga (default: $MODALTUNE_SHARED, else ../shared)."


_ENDPOINT_HELP = ("Survival endpoint, e.g. 'overall survival' (every survival task) or TASK=ENDPOINT (repeatable); "
                  "default from the column names (OS.time: overall survival, PFI.time: progression-free interval, ...), else 'survival'.")
_NA_HELP = "Extra missing-value codes of the table, e.g. --na-values na,'[Not Available]' (repeatable; read as empty cells, never as a class)."


def _split_commas(items: list[str]) -> list[str]:
    return [v.strip() for item in items for v in item.split(",") if v.strip()]


def _parse_endpoints(items: list[str]) -> str | dict[str, str] | None:
    """``--endpoint TEXT`` (all survival tasks) or ``--endpoint TASK=TEXT`` (repeatable)."""
    if not items:
        return None
    named = [i for i in items if "=" in i]
    if not named:
        if len(items) > 1:
            raise ModaltuneError(f"--endpoint given {len(items)} times without task names", where="--endpoint", fix="write --endpoint TASK=ENDPOINT for each survival task")
        return items[0].strip()
    if len(named) != len(items):
        raise ModaltuneError("--endpoint mixes TEXT and TASK=TEXT", where="--endpoint", fix="name the task of every --endpoint: TASK=ENDPOINT")
    return {k.strip(): v.strip() for k, v in (i.split("=", 1) for i in items)}


def _print_import(cohort, out: str) -> None:
    s = cohort.summary()
    avail = ", ".join(f"{k} {v}" for k, v in s["modalities"].items())
    typer.echo(f"wrote {out}: {s['patients']} patients, {s['slides']} slides listed; modalities: {avail}")
    absent = cohort.manifest.extra.get("absent_modalities") or {}
    for k, why in absent.items():
        typer.echo(f"absent modality {k}: {why}")
    for d in cohort.manifest.extra.get("duplicate_columns") or []:
        same = "identical values" if d["identical"] else "DIFFERENT values"
        typer.echo(f"duplicate column {d['column']} ({d['copies']} copies, {same}): kept the first, dropped {d['copies'] - 1} (recorded in cohort.yaml extra.duplicate_columns)")
    for name, t in s["tasks"].items():
        masked = ", ".join(f"{r}: {n}" for r, n in t["masked"].items())
        typer.echo(f"task {name}: {t['labelled']} labelled" + (f" (masked: {masked})" if masked else ""))
    for name in getattr(cohort, "splits", {}):
        typer.echo(f"split {name}: {out}/splits/{name}.csv")


@import_app.command("porpoise")
def data_import_porpoise(
    cohort: str = typer.Option(..., "--cohort", help="blca, brca, coadread, gbmlgg, hnsc, kirc, kirp, lihc, luad, lusc, paad, skcm, stad, ucec, nsclc, rcc."),
    out: str = typer.Option(..., "--out", help="Cohort directory to write."),
    shared: str | None = typer.Option(None, "--shared", help=_SHARED_HELP),
    features_dir: str = typer.Option("features", "--features-dir", help="Where slide feature files are expected (relative to --out unless absolute)."),
    subtype_task: bool = typer.Option(True, "--subtype/--no-subtype", help="Add the subtype task where one is defined."),
    splits_dir: str | None = typer.Option(None, "--splits-dir", help="Any folder of splits_{k}.csv (,train,val) instead of the shared folder's published folds."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a cohort already in --out (its features folder is kept)."),
) -> None:
    """PORPOISE/MCAT tables: omics, age/sex, overall survival, the published 5-fold splits."""
    from modaltune.data.workflows import import_data

    c = import_data("porpoise", cohort, out, shared, subtype_task=subtype_task, features_dir=features_dir, overwrite=overwrite, splits_dir=splits_dir)
    _print_import(c, out)


@import_app.command("modaltune-json")
def data_import_modaltune_json(
    cohort: str = typer.Option(..., "--cohort", help="brca, gbmlgg, nsclc, rcc, coadread, blca, pancancer."),
    out: str = typer.Option(..., "--out", help="Cohort directory to write."),
    shared: str | None = typer.Option(None, "--shared", help=_SHARED_HELP),
    features_dir: str = typer.Option("features", "--features-dir", help="Where slide feature files are expected (relative to --out unless absolute)."),
    text_fields: str = typer.Option("location,diagnosis,stage,t,n,m,age", "--text-fields", help="Comma-separated sentences of the text modality (drop 'diagnosis' for subtype tasks)."),
    json_dir: str | None = typer.Option(None, "--json-dir", help="Any folder holding train.json/val.json/test.json in the paper's format (instead of the shared folder)."),
    omics_table: list[str] = typer.Option([], "--omics-table", help="PORPOISE-style CSV (any path) to join omics from, instead of the shared tables (repeatable)."),
    omics: bool = typer.Option(True, "--omics/--no-omics", help="Join rna/cnv/mut by patient id."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a cohort already in --out (its features folder is kept)."),
) -> None:
    """The ModalTune paper's split: GDC clinical fields, subtypes, survival, text, PORPOISE omics."""
    from modaltune.data.workflows import import_data

    fields = [f.strip() for f in text_fields.split(",") if f.strip()]
    c = import_data("modaltune-json", cohort, out, shared, features_dir=features_dir, text_fields=fields, overwrite=overwrite,
                    json_dir=json_dir, omics_tables=omics_table or None, join_omics=omics)
    _print_import(c, out)


_TASK_HELP = {
    "classification": "Classification task: COLUMN, NAME=COLUMN or NAME=COLUMN:CLASS1,CLASS2 (repeatable).",
    "survival": "Survival task: TIME,EVENT or NAME=TIME,EVENT (event 1 = observed; repeatable).",
    "regression": "Regression task: COLUMN or NAME=COLUMN (repeatable).",
    "clinical": "Clinical input field: COLUMN, COLUMN:numeric, COLUMN:categorical[=A,B], COLUMN:ordinal=LOW,HIGH (repeatable).",
}


@import_app.command("xena")
def data_import_xena(
    out: str = typer.Option(..., "--out", help="Cohort directory to write."),
    omics: list[str] = typer.Option(..., "--omics", help="NAME=MATRIX: a Xena-style genes x samples TSV per omics modality (repeatable), e.g. rna=HiSeqV2.tsv."),
    labels: str = typer.Option(..., "--labels", help="Label/clinical table (CSV or TSV), one row per patient or per sample."),
    name: str | None = typer.Option(None, "--name", help="Cohort name (default: the --out folder's name)."),
    id_column: str | None = typer.Option(None, "--id-column", help="Patient/sample id column of --labels (default: patient_id, _PATIENT, case_id, ..., sample)."),
    classification: list[str] = typer.Option([], "--classification", help=_TASK_HELP["classification"]),
    survival: list[str] = typer.Option([], "--survival", help=_TASK_HELP["survival"]),
    regression: list[str] = typer.Option([], "--regression", help=_TASK_HELP["regression"]),
    clinical: list[str] = typer.Option([], "--clinical", help=_TASK_HELP["clinical"]),
    exclude_value: list[str] = typer.Option([], "--exclude-value", help="Label value masked out of every classification task (e.g. -1; repeatable)."),
    event_is_censorship: bool = typer.Option(False, "--event-is-censorship", help="The survival event column holds 1 = censored (PORPOISE style)."),
    time_unit: str = typer.Option("days", "--time-unit", help="Unit of the survival times (Xena OS.time: days)."),
    endpoint: list[str] = typer.Option([], "--endpoint", help=_ENDPOINT_HELP),
    na_values: list[str] = typer.Option([], "--na-values", help=_NA_HELP),
    site: str | None = typer.Option(None, "--site", help="Site of every patient (default: the cohort name)."),
    site_column: str | None = typer.Option(None, "--site-column", help="Column of --labels holding each patient's site."),
    slides: str | None = typer.Option(None, "--slides", help="CSV patient_id,path[,slide_id] of patch-feature bags (paths relative to it)."),
    splits: str | None = typer.Option(None, "--splits", help="Split: fold,partition,patient_id CSV, a folder of splits_{k}.csv, or a folder of train/val/test.json."),
    folds: int = typer.Option(5, "--folds", help="Without --splits: k-fold split stratified by the first task (0 = none)."),
    seed: int = typer.Option(0, "--seed"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a cohort already in --out."),
) -> None:
    """Your own UCSC Xena-style matrices (genes x samples) plus a label table, at any path."""
    from pathlib import Path

    from modaltune.data.workflows import import_xena

    mats = {}
    for item in omics:
        if "=" not in item:
            raise ModaltuneError(f"--omics '{item}' is not NAME=MATRIX", where="--omics", fix="e.g. --omics rna=HiSeqV2.tsv")
        k, v = item.split("=", 1)
        mats[k.strip()] = v.strip()
    c = import_xena(name or Path(out).name, out, omics=mats, labels=labels, id_column=id_column, classification=classification, survival=survival,
                    regression=regression, clinical=clinical, exclude_values=exclude_value, event_is_censorship=event_is_censorship,
                    time_unit=time_unit, endpoint=_parse_endpoints(endpoint), na_values=_split_commas(na_values), site=site, site_column=site_column,
                    slides=slides, splits=splits, n_folds=folds, seed=seed, overwrite=overwrite)
    _print_import(c, out)


@import_app.command("table")
def data_import_table(
    table: str = typer.Argument(..., help="Wide CSV/TSV: one row per patient (or per slide with --slide-column)."),
    out: str = typer.Option(..., "--out", help="Cohort directory to write."),
    name: str | None = typer.Option(None, "--name", help="Cohort name (default: the --out folder's name)."),
    id_column: str | None = typer.Option(None, "--id-column", help="Patient id column (default: patient_id, _PATIENT, case_id, ...)."),
    slide_column: str | None = typer.Option(None, "--slide-column", help="Rows are slides: this column names each slide (expected bag <features-dir>/<slide stem>.h5)."),
    features_dir: str = typer.Option("features", "--features-dir", help="Where slide feature files are expected (relative to --out unless absolute)."),
    omics_suffix: list[str] = typer.Option([], "--omics-suffix", help="NAME=SUFFIX: columns <GENE><SUFFIX> form omics modality NAME (default rna=_rnaseq cnv=_cnv mut=_mut)."),
    classification: list[str] = typer.Option([], "--classification", help=_TASK_HELP["classification"]),
    survival: list[str] = typer.Option([], "--survival", help=_TASK_HELP["survival"]),
    regression: list[str] = typer.Option([], "--regression", help=_TASK_HELP["regression"]),
    clinical: list[str] = typer.Option([], "--clinical", help=_TASK_HELP["clinical"]),
    exclude_value: list[str] = typer.Option([], "--exclude-value", help="Label value masked out of every classification task (repeatable)."),
    event_is_censorship: bool = typer.Option(False, "--event-is-censorship", help="The survival event column holds 1 = censored (PORPOISE 'censorship')."),
    time_unit: str = typer.Option("months", "--time-unit", help="Unit of the survival times."),
    endpoint: list[str] = typer.Option([], "--endpoint", help=_ENDPOINT_HELP),
    na_values: list[str] = typer.Option([], "--na-values", help=_NA_HELP),
    site: str | None = typer.Option(None, "--site", help="Site of every patient (default: the cohort name)."),
    site_column: str | None = typer.Option(None, "--site-column", help="Column holding each patient's site."),
    splits: str | None = typer.Option(None, "--splits", help="Split: fold,partition,patient_id CSV, a folder of splits_{k}.csv, or a folder of train/val/test.json."),
    folds: int = typer.Option(5, "--folds", help="Without --splits: k-fold split stratified by the first task (0 = none)."),
    seed: int = typer.Option(0, "--seed"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a cohort already in --out (its features folder is kept)."),
) -> None:
    """Your own wide table (omics columns by suffix, declared task and clinical columns), at any path."""
    from pathlib import Path

    from modaltune.data.workflows import import_table

    suffixes = None
    if omics_suffix:
        suffixes = {}
        for item in omics_suffix:
            if "=" not in item:
                raise ModaltuneError(f"--omics-suffix '{item}' is not NAME=SUFFIX", where="--omics-suffix", fix="e.g. --omics-suffix rna=_rnaseq")
            k, v = item.split("=", 1)
            suffixes[k.strip()] = v.strip()
    c = import_table(table, name or Path(out).name, out, id_column=id_column, slide_column=slide_column, features_dir=features_dir, omics_suffixes=suffixes,
                     classification=classification, survival=survival, regression=regression, clinical=clinical, exclude_values=exclude_value,
                     event_is_censorship=event_is_censorship, time_unit=time_unit, endpoint=_parse_endpoints(endpoint),
                     na_values=_split_commas(na_values), site=site, site_column=site_column, splits=splits,
                     n_folds=folds, seed=seed, overwrite=overwrite)
    _print_import(c, out)


@import_app.command("porpoise-csv")
def data_import_porpoise_csv(
    table: str = typer.Argument(..., help="PORPOISE-style wide CSV (.csv or .csv.zip) at any path."),
    out: str = typer.Option(..., "--out", help="Cohort directory to write."),
    name: str | None = typer.Option(None, "--name", help="Cohort name (default from the file name: tcga_blca_all_clean.csv.zip -> blca)."),
    splits_dir: str | None = typer.Option(None, "--splits-dir", help="Any folder of splits_{k}.csv (,train,val); default: a seeded k-fold split."),
    folds: int = typer.Option(5, "--folds", help="Without --splits-dir: k-fold split stratified by event x time quartile (0 = none)."),
    seed: int = typer.Option(0, "--seed"),
    features_dir: str = typer.Option("features", "--features-dir", help="Where slide feature files are expected (relative to --out unless absolute)."),
    subtype_task: bool = typer.Option(True, "--subtype/--no-subtype", help="Add the subtype task when the name is a known subtype cohort (brca, gbmlgg, coadread)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a cohort already in --out (its features folder is kept)."),
) -> None:
    """Your own PORPOISE-style table: same columns and rules as `data import porpoise`, any path."""
    from modaltune.data.workflows import import_porpoise_csv

    c = import_porpoise_csv(table, name, out, splits_dir=splits_dir, n_folds=folds, seed=seed, features_dir=features_dir,
                            subtype_task=subtype_task, overwrite=overwrite)
    _print_import(c, out)


@import_app.command("sksurv-breast")
def data_import_sksurv_breast(
    out: str = typer.Option(..., "--out", help="Cohort directory to write."),
    folds: int = typer.Option(5, "--folds", help="Folds of the split stratified by ER status x event."),
    seed: int = typer.Option(0, "--seed"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a cohort already in --out."),
) -> None:
    """REAL GSE7390 breast cancer cohort bundled with scikit-survival: 76 genes, age/size/grade, ER status, DMFS."""
    from modaltune.data.sources import import_cohort

    c = import_cohort("sksurv-breast", "gse7390", out_dir=out, n_folds=folds, seed=seed, overwrite=overwrite)
    _print_import(c, out)


@data_app.command("validate")
def data_validate(
    root: str = typer.Argument(..., help="Cohort directory."),
    check_bags: bool = typer.Option(True, "--check-bags/--no-check-bags", help="Read every existing bag file (NaN/inf, shapes, dims)."),
    max_bags: int | None = typer.Option(None, "--max-bags", help="Read at most this many bag files."),
) -> None:
    """List every problem of a cohort directory; exit 1 if there are errors (warnings alone: 0)."""
    from modaltune.data.workflows import validate_dir

    report = validate_dir(root, check_bags=check_bags, max_bags=max_bags)
    for p in report.problems:
        typer.echo(str(p), err=p.severity == "error")
    typer.echo(f"{root}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    if report.errors:
        raise typer.Exit(1)


@data_app.command("summary")
def data_summary(
    root: str = typer.Argument(..., help="Cohort directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Patients per site, modality availability, label counts per task, exclusions, splits."""
    from modaltune.data.workflows import render_summary, summarize_cohort

    s = summarize_cohort(root)
    if as_json:
        import json

        typer.echo(json.dumps(s, indent=2, default=str))
        return
    from rich.console import Console

    console = Console(width=max(100, Console().width))
    for t in render_summary(s):
        console.print(t)


@data_app.command("split")
def data_split(
    root: str = typer.Argument(..., help="Cohort directory."),
    folds: int = typer.Option(5, "--folds", help="Number of folds."),
    task: str | None = typer.Option(None, "--task", help="Stratify by this task (class, or event x time quartile)."),
    seed: int = typer.Option(0, "--seed"),
    val_fraction: float = typer.Option(0.0, "--val-fraction", help="Carve a validation part out of each training part."),
    name: str | None = typer.Option(None, "--name", help="Split name (default <task>_<folds>fold_seed<seed>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing split file of that name."),
) -> None:
    """Write a patient-level k-fold split to <root>/splits/<name>.csv."""
    from modaltune.data.workflows import split_cohort

    s = split_cohort(root, folds, task=task, seed=seed, val_fraction=val_fraction, name=name, overwrite=overwrite)
    sizes = "; ".join(f"{len(f.train)}/{len(f.val)}/{len(f.test)}" for f in s.folds)
    typer.echo(f"wrote {root}/splits/{s.name}.csv ({s.protocol}); train/val/test per fold: {sizes}")


def _parse_rates(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise ModaltuneError(f"--missing item '{part}' is not name=rate", fix="e.g. --missing slide=0.1,rna=0.3")
        k, v = part.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise ModaltuneError(f"--missing rate '{v}' of '{k}' is not a number", fix="e.g. --missing slide=0.1,rna=0.3") from None
    return out


@data_app.command("simulate")
def data_simulate(
    out: str = typer.Option(..., "--out", help="Cohort directory to write."),
    preset: str = typer.Option("demo", "--preset", help="tiny, demo or large."),
    patients: int | None = typer.Option(None, "--patients", help="Number of patients (default from the preset)."),
    seed: int = typer.Option(0, "--seed"),
    sites: str = typer.Option("BRCA,LUAD,KIRC", "--sites", help="Comma-separated cancer sites."),
    missing: str | None = typer.Option(None, "--missing", help="Missing-modality rates, e.g. slide=0.1,rna=0.3,text=0.2."),
    feature_dim: int | None = typer.Option(None, "--feature-dim", help="Patch feature dimension."),
    censoring_rate: float = typer.Option(0.4, "--censoring-rate", help="Fraction of censored patients."),
    pathways: str | None = typer.Option(None, "--pathways", help="Gene x pathway 0/1 CSV (default: built-in list)."),
    folds: int = typer.Option(5, "--folds", help="Also write a stratified k-fold split (0 = none)."),
    overwrite: bool | None = typer.Option(None, "--overwrite/--no-overwrite", help="Replace an existing cohort directory."),
) -> None:
    """Write a seeded SYNTHETIC multi-site cohort with every modality and its ground truth."""
    from modaltune.data.simulate import simulate_cohort

    site_list = [s.strip() for s in sites.split(",") if s.strip()]
    c = simulate_cohort(out, preset=preset, n_patients=patients, seed=seed, sites=site_list, missing_rates=_parse_rates(missing),
                        feature_dim=feature_dim, censoring_rate=censoring_rate, pathways_file=pathways, n_folds=folds, overwrite=overwrite)
    typer.echo(f"wrote {out}: synthetic cohort {c.name}, {len(c)} patients, sites {site_list}")


# ---------------------------------------------------------------- demo (modaltune.demo)
@app.command("demo")
def demo_cmd(
    out: str | None = typer.Option(None, "--out", help="Run folder (default runs/demo-<timestamp>); rerun into it to resume."),
    fast: bool = typer.Option(False, "--fast", help="Tiny smoke run (numbers mean nothing)."),
    optional: bool = typer.Option(True, "--optional/--no-optional", help="Add the registered optional methods of configs/demo/simulated.yaml (e.g. ModalTune)."),
    wsi: bool | None = typer.Option(None, "--wsi/--no-wsi", help="Optional WSI step: a real H&E slide to h5 features (default: when the wsi extra and the slide are installed)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Parallel benchmark units (worker processes, 1 torch thread each); default min(2, CPU cores), 1 with --fast."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write the HTML reports (RUN/simulated/report, RUN/real/report)."),
) -> None:
    """Benchmark baselines on a SIMULATED cohort and on REAL data (GSE7390 breast cancer); print both tables."""
    from modaltune.demo import run_demo

    res = run_demo(out, fast=fast, include_optional=optional, wsi=wsi, workers=workers)
    for part in ([] if no_report else [res.simulated, res.real]):
        _auto_report(part.run_dir)


# ---------------------------------------------------------------- training (modaltune.training)
@app.command("pretrain")
def pretrain_cmd(
    config: str = typer.Argument(..., help="Pretraining YAML (see configs/examples/pretrain_symile.yaml)."),
    out: str = typer.Option(..., "--out", help="Output folder: encoders.safetensors, pretrain.json, preprocessor, metrics.json (retrieval)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key, e.g. --set objective=clip (repeatable)."),
    folds: str | None = typer.Option(None, "--folds", help="'all' or a comma list (0,2): pretrain each fold into OUT/fold<k>/ (a finished fold is skipped); "
                                     "a benchmark reads them with checkpoint: OUT/fold{fold}."),
) -> None:
    """Self-supervised multimodal pretraining (symile | clip | mirror) on one fold's training patients (or each fold's, with --folds)."""
    from modaltune.config import load_config
    from modaltune.pretrain.config import PretrainConfig
    from modaltune.pretrain.run import pretrain, pretrain_folds

    cfg = load_config(config, PretrainConfig, overrides=set_)
    if folds is not None:
        done = pretrain_folds(cfg, out, folds)
        for k, r in done.items():
            mean = ((r.metrics.get("retrieval") or {}).get("mean_top1") if r else None)
            state = "already complete, skipped" if r is None else f"{len(r.train_ids)} training patients" + (f", held-out mean top-1 {mean:.3f}" if mean is not None else "")
            typer.echo(f"fold {k}: {state} -> {out}/fold{k}")
        return
    res = pretrain(cfg, out)
    last = res.history.iloc[-1]
    typer.echo(f"pretrained {cfg.objective} encoders of {', '.join(cfg.modalities)} on {len(res.train_ids)} training patients of fold {cfg.fold} "
               f"({len(res.history)} epochs, final loss {last['loss']:.4f}) -> {out}")
    ret = res.metrics.get("retrieval") or {}
    if ret.get("targets"):
        typer.echo(f"retrieval on {ret['n_patients']} held-out patients: mean top-1 {ret['mean_top1']:.3f} (chance {ret['chance']['top1']:.3f}), "
                   f"top-5 {ret['mean_top5']:.3f} (chance {ret['chance']['top5']:.3f}); details: {out}/metrics.json")
    else:
        typer.echo(f"no retrieval metric: {ret.get('note', 'the fold has no held-out patients')}")


@app.command("fit")
def fit_cmd(
    config: str = typer.Argument(..., help="Experiment YAML (see configs/examples/fit_*.yaml)."),
    out: str = typer.Option(..., "--out", help="Run folder: checkpoints, logs, model/ (OUT/fold<k>/ per fold when several folds)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key, e.g. --set trainer.max_epochs=3 or --set fold=all (repeatable)."),
    no_resume: bool = typer.Option(False, "--no-resume", help="Start over even if out/checkpoints/last.ckpt exists."),
) -> None:
    """Train one method on one fold (or on each fold: fold: [0, 2] / all) of one cohort and save it to OUT/model."""
    from modaltune.benchmark.run_folder import write_run_metadata
    from modaltune.config import load_config
    from modaltune.training.experiment_config import ExperimentConfig
    from modaltune.training.trainer import fit_folds

    cfg = load_config(config, ExperimentConfig, overrides=set_)
    fitted = fit_folds(cfg, out, resume=not no_resume)
    if any(f is None for f in fitted.values()):  # non-zero rank of a multi-process run
        return
    write_run_metadata(out, cfg)
    for k, f in fitted.items():
        where = f"{out}/fold{k}/model" if cfg.several_folds else f"{out}/model"
        typer.echo(f"saved {f.method.name} ({f.kind}) trained on {len(f.train_ids)} patients of fold {k} to {where}")
    from pathlib import Path

    from modaltune.fileio import atomic_write_text
    from modaltune.training.scoring import heldout_metrics, write_metrics

    held = heldout_metrics(cfg, fitted, out)
    if held is None:
        typer.echo("no held-out metrics: the fitted fold(s) keep no labelled patient out of training")
        return
    atomic_write_text(Path(out) / "heldout_predictions.csv", held.predictions.to_csv(index=False))
    write_metrics(held.metrics, Path(out) / "metrics.csv", held.protocol)
    _print_metrics(held.metrics, f"fit {cfg.name}: held-out metrics per fold", held.protocol)
    typer.echo(f"held-out metrics: {out}/metrics.csv (predictions: {out}/heldout_predictions.csv)")


def _named_tables(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ModaltuneError(f"{flag} '{item}' is not NAME=TABLE", where=flag, fix=f"e.g. {flag} rna=rna.csv")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@app.command("predict")
def predict_cmd(
    model_dir: str = typer.Argument(..., help="A saved model folder (OUT/model of `modaltune fit`)."),
    cohort_dir: str | None = typer.Argument(None, help="Cohort directory to predict (or use --features / --slides)."),
    out: str = typer.Option(..., "--out", help="Predictions file (.parquet or .csv)."),
    split: str | None = typer.Option(None, "--split", help="Split file or name under <cohort>/splits/ (default: all patients)."),
    fold: int = typer.Option(0, "--fold", help="Fold of --split."),
    partition: str = typer.Option("test", "--partition", help="train, val or test (with --split)."),
    features: str | None = typer.Option(None, "--features", help="Folder of TRIDENT/CLAM .h5/.pt feature files, or one file: one row per file (id = file stem) x task."),
    slides: str | None = typer.Option(None, "--slides", help="Folder of slides (or one slide): extract features with the model's recorded patch encoder, then predict."),
    omics: list[str] = typer.Option([], "--omics", help="With --features/--slides: NAME=TABLE omics table of the model's block NAME, rows = file stems (repeatable)."),
    clinical: str | None = typer.Option(None, "--clinical", help="With --features/--slides: table of the model's clinical fields, rows = file stems."),
    labels: str | None = typer.Option(None, "--labels", help="With --features/--slides: table of the tasks' label columns (as in the training cohort), rows = file stems; scores the predictions (default: label columns of --clinical)."),
    work_dir: str | None = typer.Option(None, "--work-dir", help="With --slides: where extracted features go (default: next to --out)."),
    weights: str | None = typer.Option(None, "--weights", help="With --slides: local weights of the patch encoder."),
    device: str = typer.Option("auto", "--device", help="With --slides: device of the patch encoder."),
) -> None:
    """Apply a saved model to a cohort, to feature files (--features) or to slides (--slides): one row per patient x task.

    When the patients carry labels of the model's tasks (cohort label columns, or --labels), the
    predictions are scored and the metrics written to metrics.csv next to --out.
    """
    from pathlib import Path

    from modaltune.training.trainer import FittedModel, predict

    given = [n for n, v in (("COHORT_DIR", cohort_dir), ("--features", features), ("--slides", slides)) if v]
    if len(given) != 1:
        raise ModaltuneError(f"give exactly one of COHORT_DIR, --features, --slides (got {given or 'none'})", where="predict",
                             fix="e.g. modaltune predict MODEL --features feats/ --out preds.csv")
    fitted = FittedModel.load(model_dir)
    if features or slides:
        from modaltune.training.new_data import predict_features, predict_slides

        tables = _named_tables(omics, "--omics")
        if features:
            df = predict_features(fitted, features, omics=tables, clinical=clinical, labels=labels)
        else:
            wd = Path(work_dir) if work_dir else Path(out).parent / (Path(out).stem + "_work")
            df = predict_slides(fitted, slides, wd, omics=tables, clinical=clinical, labels=labels, weights=weights, device=device)
    else:
        from modaltune.data.cohort import Cohort

        cohort = Cohort.load(cohort_dir)
        ids = None
        if split:
            from modaltune.data.splits import SplitSet
            from modaltune.training.sources import _split_path

            ss = SplitSet.load(_split_path(cohort, split))
            folds = {f.index: f for f in ss.folds}
            if fold not in folds:
                raise ModaltuneError(f"fold {fold} is not in the split (folds {sorted(folds)})", where="--fold")
            if partition not in ("train", "val", "test"):
                raise ModaltuneError(f"unknown partition '{partition}'", where="--partition", fix="use train, val or test")
            ids = getattr(folds[fold], partition)
        df = predict(fitted, cohort, ids)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False) if path.suffix == ".csv" else df.to_parquet(path, index=False)
    typer.echo(f"wrote {len(df)} prediction rows ({df['patient_id'].nunique()} patients) to {out}")
    _score_predict(fitted, df, path, source=cohort_dir or features or slides)


def _score_predict(fitted, df, path, source: str) -> None:
    """Score `predict`'s rows when they carry labels (metrics.csv beside the predictions), else say why not."""
    from modaltune.training.scoring import score_predictions, write_metrics

    metrics = score_predictions(fitted, df)
    if metrics is None:
        typer.echo(f"predictions are unscored: {source} carries no label of the model's tasks {fitted.tasks}")
        return
    pids = set(df["patient_id"].astype(str))
    train = set(fitted.train_ids)
    # --features ids are file stems: TCGA-AB-1234-01Z-00-DX1 is a slide of training patient TCGA-AB-1234
    seen = sum(p in train or any(p.startswith(t) and p[len(t)] in "-_." for t in train if len(p) > len(t)) for p in pids)
    caption = f"{len(pids)} patients of {source}; model {fitted.method.name} trained on {len(fitted.train_ids)} patients"
    caption += f"; WARNING: {seen} of these patients were training patients, so these are not held-out metrics" if seen else "; none of them a training patient"
    mpath = write_metrics(metrics, path.parent / "metrics.csv", caption)
    _print_metrics(metrics, f"predict: metrics of {path.name}", caption)
    typer.echo(f"metrics: {mpath}")


@app.command("explain")
def explain_cmd(
    model_dir: str = typer.Argument(..., help="A saved model folder (OUT/model of `modaltune fit`)."),
    cohort: str = typer.Option(..., "--cohort", help="Cohort directory holding the patients."),
    out: str = typer.Option(..., "--out", help="Output folder: <patient>/heatmap_*.png, attention_*.csv, topk_*.png, attributions_*.csv/.png, explain.json."),
    patients: list[str] = typer.Option([], "--patients", help="Patient id (repeatable)."),
    fold: int | None = typer.Option(None, "--fold", help="Explain every test patient of this fold (of --split)."),
    split: str | None = typer.Option(None, "--split", help="Split name with --fold (default: the cohort's first split)."),
    task: str | None = typer.Option(None, "--task", help="Task to explain (default: the model's first task)."),
    slides_dir: str | None = typer.Option(None, "--slides", help="Folder of the whole-slide images: heatmaps over thumbnails and top-k tiles (else over the patch grid)."),
    top_k: int = typer.Option(8, "--top-k", help="Highest-attention patches to cut from the slide."),
    n_steps: int = typer.Option(64, "--ig-steps", help="Integrated-gradients steps."),
    ig: bool = typer.Option(True, "--ig/--no-ig", help="Integrated gradients over omics genes / clinical fields (needs captum)."),
) -> None:
    """Attention heatmaps (ABMIL, TransMIL, ModalTune) and integrated-gradients attributions for patients of a cohort."""
    from modaltune.data.cohort import Cohort
    from modaltune.interpret import explain_patients, fold_patients

    c = Cohort.load(cohort)
    if bool(patients) == (fold is not None):
        raise ModaltuneError("give either --patients or --fold", where="explain", fix="e.g. --patients P1 --patients P2, or --fold 0")
    ids = list(patients) if patients else fold_patients(c, fold, split=split)
    idx = explain_patients(model_dir, c, ids, out, task=task, slides_dir=slides_dir, top_k=top_k, n_steps=n_steps, attributions=ig)
    n_files = sum(len(r["files"]) for r in idx["patients"].values())
    typer.echo(f"explained {len(ids)} patient(s) ({idx['method']}, task {idx['task']}; attention: {', '.join(idx['attention_sources']) or 'none'}): "
               f"{n_files} files in {out} (index: {out}/explain.json)")
    for pid, r in idx["patients"].items():
        for why in r["skipped"]:
            typer.echo(f"{pid}: {why}", err=True)


@app.command("benchmark")
def benchmark_cmd(
    config: str = typer.Argument(..., help="Benchmark YAML (see configs/examples/benchmark_*.yaml)."),
    out: str | None = typer.Option(None, "--out", help="Run folder (default runs/<name>)."),
    workers: int = typer.Option(1, "--workers", help="Parallel local worker processes."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Run units as Ray tasks: auto, local or host:port."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key (repeatable)."),
    no_resume: bool = typer.Option(False, "--no-resume", help="Recompute every unit."),
    force: bool = typer.Option(False, "--force", help="Recompute finished units whose config changed (their old results are deleted); without it such units stop the run."),
    epoch_progress: bool = typer.Option(False, "--epoch-progress", help="Show Lightning's epoch progress bars inside each unit (serial runs: --workers 1, no Ray)."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write the HTML report (OUT/report/report.html)."),
) -> None:
    """Run methods x cohorts x tasks x folds x seeds; resumable; writes results.csv, summary.md, predictions.parquet.

    Exit status: 0 every unit done; 1 tables written but some unit failed (failed_units.csv);
    2 a usage or config error, or another run holds --out; 3 the disk is full, over quota or
    read-only; 130 / 143 stopped by SIGINT / SIGTERM (workers killed; rerun the command to resume).
    """
    from modaltune.benchmark import run_benchmark

    res = run_benchmark(config, out, workers=workers, ray_address=ray_address, resume=not no_resume, overrides=set_, force=force, epoch_progress=epoch_progress)
    n = len(res.statuses)
    if not res.results.empty:
        _print_results(res.results, f"benchmark {res.out_dir.name}", res.out_dir)
    if not no_report:
        _auto_report(res.out_dir)
    typer.echo(f"{n} units ({sum(s == 'skipped' for s in res.statuses.values())} already done, {len(res.failed)} failed); tables in {res.out_dir}")
    if res.failed:
        typer.echo("failed units (reasons in failed_units.csv and summary.md): " + ", ".join(res.failed[:5]) + (" ..." if len(res.failed) > 5 else ""), err=True)
        raise typer.Exit(EXIT_ITEMS_FAILED)


@app.command("report")
def report_cmd(
    run_dir: str = typer.Argument(..., help="A benchmark run folder (the --out of `modaltune benchmark`; for a demo: RUN/simulated or RUN/real)."),
    out: str | None = typer.Option(None, "--out", help="HTML file to write (default RUN_DIR/report/report.html; PNGs in figures/ beside it)."),
    km: str = typer.Option("median", "--km", help="Kaplan-Meier risk groups: median or tertiles (cut within each fold)."),
) -> None:
    """Figures (KM, time-dependent AUC, ROC/PR, confusion, reliability, forest, training curves) and one self-contained HTML file."""
    from modaltune.reports import build_report

    typer.echo(f"wrote {build_report(run_dir, out, km_scheme=km)}")


analyse_app = typer.Typer(no_args_is_help=True, help="Cohort analyses without training (partial information decomposition).")
app.add_typer(analyse_app, name="analyse")


@analyse_app.command("interactions")
def analyse_interactions_cmd(
    cohort_dir: str = typer.Argument(..., help="Cohort directory."),
    modalities: list[str] = typer.Option(..., "--modality", "-m", help="A modality name; give exactly two (e.g. -m rna -m clinical)."),
    task: str = typer.Option(..., "--task", help="A classification or survival task of the cohort."),
    out: str | None = typer.Option(None, "--out", help="Folder for pid.json and pid.csv."),
    clusters: int = typer.Option(6, "--clusters", help="k-means clusters per modality (the plug-in bias grows with clusters^2 x classes / patients)."),
    components: int = typer.Option(8, "--components", help="PCA components before k-means."),
    horizon: float | None = typer.Option(None, "--horizon", help="Survival tasks: label = event by this time (task's unit; default the median event time)."),
    n_boot: int = typer.Option(100, "--boot", help="Patient resamples for the intervals."),
    n_perm: int = typer.Option(10, "--permutations", help="Label permutations for the null (bias) column."),
    seed: int = typer.Option(0, "--seed", help="Seed of PCA/k-means, resamples and permutations."),
) -> None:
    """Will fusion help? Redundancy, uniqueness of each modality and synergy (bits) about a task (docs/analysis.md)."""
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from modaltune.analysis.interactions import analyse_interactions
    from modaltune.data.cohort import Cohort

    if len(modalities) != 2:
        raise ModaltuneError(f"give exactly two modalities, got {modalities}", where="--modality", fix="e.g. -m rna -m clinical")
    res = analyse_interactions(Cohort.load(cohort_dir), (modalities[0], modalities[1]), task, n_clusters=clusters, n_components=components,
                               horizon=horizon, n_boot=n_boot, n_permutations=n_perm, seed=seed)
    df = res.table()
    t = Table(title=f"[bold]PID of {res.modalities[0]} and {res.modalities[1]} about {task}[/bold] ({res.cohort}, {res.estimate.n} patients, bits)",
              caption=f"label: {res.label_note}; H(Y) = {res.label_entropy:.3f} bits; {res.n_clusters[0]} x {res.n_clusters[1]} clusters; "
                      f"95% basic bootstrap over {res.n_boot} resamples; null = mean over {res.n_permutations} label permutations",
              caption_justify="left")
    for c in ("part", "bits", "95% CI", "null", "bits - null"):
        t.add_column(c, justify="left" if c == "part" else "right")
    for r in df.itertuples():
        t.add_row(r.name, f"{r.bits:.3f}", f"[{r.ci_low:.3f}, {r.ci_high:.3f}]", f"{r.null_bits:.3f}", f"{r.excess_bits:.3f}")
    Console().print(t)
    if out:
        import json

        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        df.to_csv(d / "pid.csv", index=False)
        (d / "pid.json").write_text(json.dumps(res.as_dict(), indent=2))
        typer.echo(f"wrote {d / 'pid.json'} and {d / 'pid.csv'}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``modaltune`` script."""
    from modaltune.benchmark.interrupt import RunInterrupted
    from modaltune.fileio import DiskError

    try:
        rv = app(args=argv, standalone_mode=False)
    except DiskError as exc:
        typer.echo(f"error: {exc}", err=True)
        return EXIT_DISK
    except ModaltuneError as exc:
        typer.echo(f"error: {exc}", err=True)
        return EXIT_USER
    except RunInterrupted as exc:
        typer.echo(f"{exc}: finished units are kept; rerun the same command to resume", err=True)
        return exc.exit_code
    except typer.Exit as exc:  # pragma: no cover - typer control flow
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        return 130
    except Exception as exc:  # click usage errors
        # typer >= 0.17 vendors its own click, so match click's exception interface, not its class
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare group: show its help
                exc.show()
                return 0
            cmd = getattr(getattr(exc, "ctx", None), "command_path", "modaltune")
            typer.echo(f"error: {exc.format_message()} (see `{cmd} --help`)".replace("\n", " "), err=True)
            return int(exc.exit_code)
        raise
    # with standalone_mode=False, click returns the code of `raise typer.Exit(code)` instead of exiting
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
