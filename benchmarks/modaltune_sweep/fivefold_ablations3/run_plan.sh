#!/bin/bash
# pre-registered run order of benchmarks/modaltune_sweep/preregistered_5fold_ablations3.yaml, one unit per call
# (a unit is skipped when its estimated wall time would end after 18:00 UTC; a running unit is stopped at 18:02)
cd /work/wt/h25d
export PYTHONPATH=/work/wt/h25d/src OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=benchmarks/modaltune_sweep/preregistered_5fold_ablations3.yaml
R=/work/runs/h25d
DEADLINE=$(date -u -d "18:00" +%s)
unit() {  # kind(variant|methods) name seed fold need_s
  now=$(date -u +%s)
  if [ $((now + $5)) -gt $DEADLINE ]; then
    echo "$(date -u +%FT%TZ) SKIP $2 seed $3 fold $4 (need ${5}s; deadline 18:00)" | tee -a $R/skipped.txt; return; fi
  echo "$(date -u +%FT%TZ) START $2 seed $3 fold $4 loadavg $(cat /proc/loadavg)"
  /usr/bin/time -f "$2 $3 $4 %U %S %e" -a -o $R/cpu.txt timeout $((DEADLINE - now + 120)) nice -n 10 /work/main/.venv/bin/python \
    benchmarks/modaltune_sweep/run_fivefold.py --plan $P run --runs $R --$1 $2 --seeds $3 --folds $4 > $R/logs/$2_s$3_f$4.log 2>&1
  echo "$(date -u +%FT%TZ) END $2 seed $3 fold $4 rc $? loadavg $(cat /proc/loadavg)"
}
mkdir -p $R/logs
unit methods modaltune 0 0 240
for f in 0 1 2 3 4; do unit variant mt_clinical 0 $f 240; done
for f in 0 1 2 3 4; do unit variant lf_clinical 0 $f 40; done
for f in 0 1 2 3 4; do unit variant coxnet_rna_clinical 0 $f 20; done
for s in 0 1 2; do for f in 0 1 2 3 4; do unit methods late_fusion $s $f 40; done; done
for s in 1 2; do
  for f in 0 1 2 3 4; do unit variant mt_clinical $s $f 240; done
  for f in 0 1 2 3 4; do unit variant lf_clinical $s $f 40; done
  for f in 0 1 2 3 4; do unit variant coxnet_rna_clinical $s $f 20; done
done
for f in 1 2 3 4; do unit methods modaltune 0 $f 240; done
for s in 1 2; do for f in 0 1 2 3 4; do unit methods modaltune $s $f 240; done; done
echo "$(date -u +%FT%TZ) ALL DONE"
