#!/bin/bash
# pre-registered run order of benchmarks/modaltune_sweep/preregistered_5fold_ablations2.yaml
cd /work/wt/h24d
export PYTHONPATH=/work/wt/h24d/src OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=benchmarks/modaltune_sweep/preregistered_5fold_ablations2.yaml
R=/work/runs/h24d
DEADLINE=$(date -u -d "09:35" +%s)
BUDGET_S=3600
step() {  # variant seed need_s
  now=$(date -u +%s); used=$(awk '{s+=$3+$4} END {print int(s)}' $R/cpu.txt 2>/dev/null || echo 0)
  if [ $((now + $3)) -gt $DEADLINE ] || [ $((used + $3)) -gt $BUDGET_S ]; then
    echo "$(date -u +%FT%TZ) SKIP $1 seed $2 (need ${3}s; cpu used ${used}s; deadline 09:35)" | tee -a $R/skipped.txt; return; fi
  echo "$(date -u +%FT%TZ) START $1 seed $2 loadavg $(cat /proc/loadavg)"
  /usr/bin/time -f "$1 $2 %U %S %e" -a -o $R/cpu.txt timeout $((DEADLINE - now)) nice -n 10 /work/main/.venv/bin/python benchmarks/modaltune_sweep/run_fivefold.py --plan $P run --runs $R --variant $1 --seeds $2
  echo "$(date -u +%FT%TZ) END $1 seed $2 rc $? loadavg $(cat /proc/loadavg)"
}
step clinical_cox 0 60; step clinical_cox 1 60; step clinical_cox 2 60
step linear_probe 0 300; step linear_probe 1 300; step linear_probe 2 300
step no_extractor 0 660; step onehot 0 720
step no_extractor 1 660; step onehot 1 720
step no_extractor 2 660; step onehot 2 720
echo "$(date -u +%FT%TZ) ALL DONE"
