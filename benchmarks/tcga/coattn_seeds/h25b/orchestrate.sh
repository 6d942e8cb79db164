#!/bin/bash
# h25b: the method-seeds h24e skipped (abmil seed 2; motcat, survpath seeds 1-2), in that order, one method per
# driver call; a call starts only if its seed-0 wall cost x max(1.3, 1.1 x the worst observed actual/seed-0 ratio)
# fits before 18:00 UTC. Then one aggregation call per seed (resumes every unit, writes results.csv etc.).
cd /work/wt/h25b
export PYTHONPATH=/work/wt/h25b/src OMP_NUM_THREADS=1
PY=/work/main/.venv/bin/python
OUT=/work/runs/h25b/tcga
LOG=/work/runs/h25b
DEADLINE=$(date -u -d "18:00" +%s)
declare -A EST=( [abmil]=392 [motcat]=891 [survpath]=1080 )
RATIO=130  # percent
drive() { # seed "methods"
  nice -n 10 $PY benchmarks/run_tcga.py --configs coattn_mcat5 --simulated-bags --sim-dim 32 --sim-patches 16 32 --cohorts blca brca gbmlgg luad ucec --methods $2 --tag seed$1 --set trainer.max_epochs=4 --set "seeds=[$1]" --shared /work/shared --out $OUT --workers 1
}
run_one() { # seed method
  local s=$1 m=$2 now=$(date -u +%s)
  local need=$(( EST[$m] * RATIO / 100 ))
  if (( now + need > DEADLINE )); then echo "SKIP seed $s $m: needs ~${need}s, $(( DEADLINE - now ))s left ($(date -u +%T))"; return 1; fi
  echo "START seed $s $m $(date -u +%T) load $(cat /proc/loadavg)"; echo "$(date -u +%T) start seed$s $m $(cat /proc/loadavg)" >> $LOG/loadavg_seed$s.txt
  drive $s $m > $LOG/log_seed${s}_$m.txt 2>&1
  local rc=$? took=$(( $(date -u +%s) - now ))
  echo "END seed $s $m rc $rc $(date -u +%T) ${took}s load $(cat /proc/loadavg)"; echo "$(date -u +%T) end seed$s $m rc$rc $(cat /proc/loadavg)" >> $LOG/loadavg_seed$s.txt
  local r=$(( took * 110 / EST[$m] )); (( r > RATIO )) && RATIO=$r
  echo "$m" >> $LOG/done_seed$s.txt
}
run_one 2 abmil
run_one 1 motcat; run_one 2 motcat
run_one 1 survpath; run_one 2 survpath
for s in 1 2; do
  [ -s $LOG/done_seed$s.txt ] || continue
  ms=$(tr '\n' ' ' < $LOG/done_seed$s.txt)
  echo "$(date -u +%T) aggregate seed$s $(cat /proc/loadavg)" >> $LOG/loadavg_seed$s.txt
  echo "AGGREGATE seed $s: $ms $(date -u +%T)"; drive $s "$ms" > $LOG/log_seed${s}_aggregate.txt 2>&1; echo "rc $? $(date -u +%T)"
done
echo ALLDONE $(date -u +%T)
