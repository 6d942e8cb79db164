#!/bin/bash
# h25b, after orchestrate2.sh finished at 17:40:34: motcat seed 2 on LUAD alone (seed-1 LUAD call took 711 s; 17:42
# + ~800 s ends before 18:00), killed by `timeout` at 17:58:30 UTC if still running (an unfinished unit leaves no
# unit folder); then its aggregation call over LUAD only, started only before 18:00 UTC.
cd /work/wt/h25b
export PYTHONPATH=/work/wt/h25b/src OMP_NUM_THREADS=1
PY=/work/main/.venv/bin/python
OUT=/work/runs/h25b/tcga
LOG=/work/runs/h25b
left=$(( $(date -u -d "17:58:30" +%s) - $(date -u +%s) ))
drive() { nice -n 10 timeout $1 $PY benchmarks/run_tcga.py --configs coattn_mcat5 --simulated-bags --sim-dim 32 --sim-patches 16 32 --cohorts luad --methods motcat --tag seed2 --set trainer.max_epochs=4 --set "seeds=[2]" --shared /work/shared --out $OUT --workers 1; }
echo "START seed 2 motcat luad $(date -u +%T) limit ${left}s load $(cat /proc/loadavg)"; echo "$(date -u +%T) start seed2 motcat luad $(cat /proc/loadavg)" >> $LOG/loadavg_seed2.txt
drive $left > $LOG/log_seed2_motcat_luad.txt 2>&1; rc=$?
echo "END seed 2 motcat luad rc $rc $(date -u +%T) load $(cat /proc/loadavg)"; echo "$(date -u +%T) end seed2 motcat luad rc$rc $(cat /proc/loadavg)" >> $LOG/loadavg_seed2.txt
if (( rc == 0 )) && (( $(date -u +%s) < $(date -u -d "18:00" +%s) )); then
  echo "$(date -u +%T) aggregate seed2 motcat / luad $(cat /proc/loadavg)" >> $LOG/loadavg_seed2.txt
  echo "AGGREGATE seed 2: motcat / luad $(date -u +%T)"; drive 600 > $LOG/log_seed2_aggregate_partial_motcat.txt 2>&1; echo "rc $? $(date -u +%T)"
  mkdir -p $LOG/agg/seed2_partial_motcat && cp $OUT/coattn_mcat5_seed2_simbags/{results.csv,predictions.parquet,failed_units.csv,summary.md,config.yaml} $LOG/agg/seed2_partial_motcat/
fi
echo ALLDONE $(date -u +%T)
