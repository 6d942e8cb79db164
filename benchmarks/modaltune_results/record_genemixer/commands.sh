#!/usr/bin/env bash
# Re-run (2026-12-04, task h21j) of the Gene Mixer record rows of benchmarks/RESULTS.md (ModalTune paper-protocol
# section): the two units (Gene Mixer, Gene Mixer (cat)) of configs/modaltune/paper_single_site_gigapath.yaml on the
# imported BRCA cohort with SIMULATED noise slide bags (GigaPath-shaped, 32-128 patches, seed 0). The original run
# folder runs/mt_audit/record_genemixer was never committed and no longer exists.
# Code: commit f6128d8 (git.json). Run root /work/runs/h21j; benchmark wrapped in /usr/bin/time -v (timing_loadavg.txt).
set -euxo pipefail
export PYTHONPATH=/work/wt/h21j/src OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
PY=/work/main/.venv/bin/python
cd /work/wt/h21j
nice -n 10 $PY -m modaltune.cli data import modaltune-json --cohort brca --out /work/runs/h21j/brca --shared /work/shared
nice -n 10 $PY -c "from modaltune.modaltune.realsim import attach_simulated_bags as a; a('/work/runs/h21j/brca', backbone='gigapath', patches=(32, 128))"
/usr/bin/time -v nice -n 10 $PY -m modaltune.cli benchmark configs/modaltune/paper_single_site_gigapath.yaml --out /work/runs/h21j/record_genemixer --workers 1 \
  --set 'data.cohorts=[/work/runs/h21j/brca]' --set 'seeds=[0]' --set trainer.max_epochs=1 --set trainer.warmup_epochs=0 \
  --set trainer.warmup_start_lr=null --set trainer.max_patches=128 --set trainer.precision=32-true --set trainer.accelerator=cpu \
  --set evaluation.bootstrap=200 --set 'methods=[{name: gene_mixer, label: Gene Mixer, modalities: [rna]}, {name: late_fusion, label: Gene Mixer (cat), modalities: [slide, rna], params: {slide_encoder: mean, omics_encoder: gene_mixer}}]'
