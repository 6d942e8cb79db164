#!/bin/bash
# run_plan.sh, continued after its first unit (cell C reference seed 0 fold 0), re-sized at the measured load (~6 on 2
# cores: ~10 min wall per ModalTune unit): the cheap units run one seed per process; (b) and (c) seeds 1-2 run BEFORE
# mt_clinical seed 1 (a reorder of the pre-registered run order: at ~10 min per unit a second mt_clinical seed
# cannot complete by 18:00, the cheap seeds can). A unit / seed is skipped when its estimate would end after 18:00.
cd /work/wt/h25d
export PYTHONPATH=/work/wt/h25d/src OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=benchmarks/modaltune_sweep/preregistered_5fold_ablations3.yaml
R=/work/runs/h25d
DEADLINE=$(date -u -d "18:00" +%s)
while kill -0 7073 2>/dev/null; do sleep 5; done   # run_plan.sh's unit still running
echo "$(date -u +%FT%TZ) END modaltune seed 0 fold 0 (run_plan.sh)"
step() {  # kind(variant|methods) name seed folds need_s
  now=$(date -u +%s)
  if [ $((now + $5)) -gt $DEADLINE ]; then
    echo "$(date -u +%FT%TZ) SKIP $2 seed $3 folds $4 (need ${5}s; deadline 18:00)" | tee -a $R/skipped.txt; return; fi
  echo "$(date -u +%FT%TZ) START $2 seed $3 folds $4 loadavg $(cat /proc/loadavg)"
  /usr/bin/time -f "$2 $3 ${4// /,} %U %S %e" -a -o $R/cpu.txt timeout $((DEADLINE - now + 120)) nice -n 10 /work/main/.venv/bin/python \
    benchmarks/modaltune_sweep/run_fivefold.py --plan $P run --runs $R --$1 $2 --seeds $3 --folds $4 > "$R/logs/$2_s$3_f${4// /}.log" 2>&1
  echo "$(date -u +%FT%TZ) END $2 seed $3 folds $4 rc $? loadavg $(cat /proc/loadavg)"
}
for f in 0 1 2 3 4; do step variant mt_clinical 0 $f 600; done
step variant lf_clinical 0 "0 1 2 3 4" 300
step variant coxnet_rna_clinical 0 "0 1 2 3 4" 120
for s in 0 1 2; do step methods late_fusion $s "0 1 2 3 4" 300; done
for s in 1 2; do step variant lf_clinical $s "0 1 2 3 4" 300; step variant coxnet_rna_clinical $s "0 1 2 3 4" 120; done
for f in 0 1 2 3 4; do step variant mt_clinical 1 $f 600; done
echo "$(date -u +%FT%TZ) ALL DONE"
