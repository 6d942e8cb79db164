#!/bin/bash
# h24c continuation (issue 15): after driver_h24c.sh (cmta, mm_lego (merge), dispro; seeds 1 and 2 resumed into
# copies of the lead's folders), the same analysis as finalize_mcat_lead.sh on the new folders, one process at a
# time, then compare_rows.py: every row of a method not in $RAN must equal the previous commit's (max abs diff).
cd /work/wt/h24c
export PYTHONPATH=/work/wt/h24c/src OMP_NUM_THREADS=1
PY="nice -n 10 /work/main/.venv/bin/python"
R=/work/runs/h24c
B=benchmarks/missing_grid
TITLE="Missing-modality grid, SIMULATED cohort (simulate_cohort demo seed 0, 300 patients), 5-fold CV"
RAN=("cmta" "mm_lego (merge)" "dispro")
TIMEFORMAT="%C user %U sys %S wall %R"
{
echo "$(date -u +%FT%TZ) finalize start load $(cat /proc/loadavg)"
time $PY $B/analyze.py --run $R/sim_grid_s1 --out $B/sim_seed1 --n 1000 --title "$TITLE, training seed 1" > $R/analyze_s1.txt
time $PY $B/check_masks.py --run $R/sim_grid_s1 --cohort /work/runs/h20c/sim_demo --out $B/sim_seed1/masks_check.json
time $PY $B/analyze.py --run $R/sim_grid_s2 --out $B/sim_seed2 --n 1000 --title "$TITLE, training seed 2" > $R/analyze_s2.txt
time $PY $B/check_masks.py --run $R/sim_grid_s2 --cohort /work/runs/h20c/sim_demo --out $B/sim_seed2/masks_check.json
time $PY $B/seeds.py --runs /work/runs/h22f/sim_grid $R/sim_grid_s1 $R/sim_grid_s2 --out $B/sim_seeds --n 1000 \
  --title "$TITLE: training seeds 0, 1, 2 pooled" > $R/seeds_out.txt
$PY $B/sim_seeds/compare_rows.py --ref HEAD --exclude "${RAN[@]}" --out $B/sim_seeds/unchanged_rows_h24c.json \
  $B/sim_seed1/degradation.csv $B/sim_seed1/paired.csv $B/sim_seed2/degradation.csv $B/sim_seed2/paired.csv \
  $B/sim_seeds/degradation.csv $B/sim_seeds/paired.csv $B/sim_seeds/pooled_c.csv
echo "$(date -u +%FT%TZ) finalize end load $(cat /proc/loadavg)"
} >> $R/finalize.log 2>&1
