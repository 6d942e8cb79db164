#!/bin/bash
cd /work/main
export PYTHONPATH=/work/main/src OMP_NUM_THREADS=1
PY="nice -n 10 /work/main/.venv/bin/python"
R=/work/runs/lead
B=benchmarks/missing_grid
TITLE="Missing-modality grid, SIMULATED cohort (simulate_cohort demo seed 0, 300 patients), 5-fold CV"
$PY $B/analyze.py --run $R/sim_grid_s1 --out $B/sim_seed1 --n 1000 --title "$TITLE, training seed 1" > $R/analyze_s1.txt
$PY $B/check_masks.py --run $R/sim_grid_s1 --cohort /work/runs/h20c/sim_demo --out $B/sim_seed1/masks_check.json
$PY $B/analyze.py --run $R/sim_grid_s2 --out $B/sim_seed2 --n 1000 --title "$TITLE, training seed 2" > $R/analyze_s2.txt
$PY $B/check_masks.py --run $R/sim_grid_s2 --cohort /work/runs/h20c/sim_demo --out $B/sim_seed2/masks_check.json
$PY $B/seeds.py --runs /work/runs/h22f/sim_grid $R/sim_grid_s1 $R/sim_grid_s2 --out $B/sim_seeds --n 1000 --title "$TITLE: training seeds 0, 1, 2 pooled" > $R/seeds_out.txt
