#!/bin/bash
# analysis after the grid: analyze + check_masks per seed folder, then seeds.py over seeds 0-2 (one process at a time)
cd /work/wt/h23d
export PYTHONPATH=/work/wt/h23d/src OMP_NUM_THREADS=1
PY="nice -n 10 /work/main/.venv/bin/python"
R=/work/runs/h23d
B=benchmarks/missing_grid
TITLE="Missing-modality grid, SIMULATED cohort (simulate_cohort demo seed 0, 300 patients), 5-fold CV"
TIMEFORMAT="%C user %U sys %S wall %R"
{
echo "$(date -u +%FT%TZ) finalize start load $(cat /proc/loadavg)"
time $PY $B/analyze.py --run $R/sim_grid_s1 --out $B/sim_seed1 --n 1000 --title "$TITLE, training seed 1" > $R/analyze_s1.txt
time $PY $B/check_masks.py --run $R/sim_grid_s1 --cohort /work/runs/h20c/sim_demo --out $B/sim_seed1/masks_check.json
time $PY $B/analyze.py --run $R/sim_grid_s2 --out $B/sim_seed2 --n 1000 --title "$TITLE, training seed 2" > $R/analyze_s2.txt
time $PY $B/check_masks.py --run $R/sim_grid_s2 --cohort /work/runs/h20c/sim_demo --out $B/sim_seed2/masks_check.json
time $PY $B/seeds.py --runs /work/runs/h22f/sim_grid $R/sim_grid_s1 $R/sim_grid_s2 --out $B/sim_seeds --n 1000 \
  --title "$TITLE: training seeds 0, 1, 2 pooled" > $R/seeds_out.txt
echo "$(date -u +%FT%TZ) finalize end load $(cat /proc/loadavg)"
} >> $R/finalize.log 2>&1
