#!/usr/bin/env bash
# Re-run 2026-12-04 (task h21k) of the 1-epoch smoke run of configs/modaltune/paper_single_site_gigapath.yaml; run root /work/runs/h21k.
# The BRCA cohort /work/runs/h21k/brca was imported first (see ../paper_single_site_titan/commands.sh):
# modaltune data import modaltune-json --cohort brca --out /work/runs/h21k/brca --shared /work/shared
export PYTHONPATH=/work/wt/h21k/src OMP_NUM_THREADS=1
cd /work/wt/h21k
nice -n 10 /work/main/.venv/bin/python -c "from modaltune.modaltune.realsim import small_cohort, attach_simulated_bags as a; a(small_cohort('/work/runs/h21k/brca', '/work/runs/h21k/brca_small'), backbone='gigapath', patches=(32, 96))"
cat /proc/loadavg > /work/runs/h21k/loadavg_gigapath_start.txt
/usr/bin/time -v -o /work/runs/h21k/time_gigapath.txt nice -n 10 /work/main/.venv/bin/python -m modaltune.cli benchmark configs/modaltune/paper_single_site_gigapath.yaml --out /work/runs/h21k/smoke_gigapath --workers 1 \
  --set "data.cohorts=[/work/runs/h21k/brca_small]" --set 'seeds=[0]' --set trainer.max_epochs=1 --set trainer.warmup_epochs=0.5 \
  --set trainer.max_patches=64 --set trainer.precision=32-true --set trainer.accelerator=cpu --set evaluation.bootstrap=100 \
  --set methods.0.params.random_init=true --set methods.1.params.random_init=true --set methods.2.params.random_init=true --set methods.3.params.random_init=true
cat /proc/loadavg > /work/runs/h21k/loadavg_gigapath_end.txt
