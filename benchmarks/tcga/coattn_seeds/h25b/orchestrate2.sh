#!/bin/bash
# h25b, replacing orchestrate.sh after its first call (restarted once at 16:56 UTC, still waiting on abmil, to put
# the claim cohorts first) (abmil seed 2, already running as PID $1; orchestrate.sh was
# stopped so that its all-or-nothing per-method rule would not skip motcat outright: under this session's load the
# late_fusion reproduction ran 3.4x slower than h24e's). The remaining method-seeds (motcat seeds 1, 2; survpath
# seeds 1, 2, in that order) run ONE COHORT PER DRIVER CALL into the same run folder (the units' config hash does
# not depend on --cohorts, so the later aggregation call resumes them). A call starts only if
# seed-0 seconds of that method x cohort (benchmarks/tcga/coattn/unit_seconds.csv) x RATIO + 60 s fits before
# 17:50 UTC; RATIO = 1.1 x the last call's actual/seed-0 ratio (first: abmil seed 2's). Then one aggregation call
# per seed over every method that ran at that seed (17:50-18:00 reserved for them):
# complete methods (every cohort) together; a method cut short by time separately over its finished cohorts, so
# that no aggregation call computes a missing unit.
cd /work/wt/h25b
export PYTHONPATH=/work/wt/h25b/src OMP_NUM_THREADS=1
PY=/work/main/.venv/bin/python
OUT=/work/runs/h25b/tcga
LOG=/work/runs/h25b
DEADLINE=$(date -u -d "17:50" +%s)
declare -A S0=( [abmil]=392 [motcat_blca]=268 [motcat_brca]=195 [motcat_gbmlgg]=145 [motcat_luad]=106 [motcat_ucec]=177
                [survpath_blca]=351 [survpath_brca]=319 [survpath_gbmlgg]=243 [survpath_luad]=167 )
drive() { # seed "methods" "cohorts"
  nice -n 10 $PY benchmarks/run_tcga.py --configs coattn_mcat5 --simulated-bags --sim-dim 32 --sim-patches 16 32 --cohorts $3 --methods $2 --tag seed$1 --set trainer.max_epochs=4 --set "seeds=[$1]" --shared /work/shared --out $OUT --workers 1
}
# 1. wait for abmil seed 2 (started by orchestrate.sh at $2 epoch seconds)
while kill -0 $1 2>/dev/null; do sleep 5; done
took=$(( $(date -u +%s) - $2 ))
echo "END seed 2 abmil (orchestrate.sh's call) $(date -u +%T) ${took}s load $(cat /proc/loadavg)"
echo "$(date -u +%T) end seed2 abmil $(cat /proc/loadavg)" >> $LOG/loadavg_seed2.txt
echo abmil >> $LOG/done_seed2.txt
RATIO=$(( took * 110 / S0[abmil] ))  # percent
stopped=0
run_cohort() { # seed method cohort
  local s=$1 m=$2 c=$3 now=$(date -u +%s)
  (( stopped )) && return 1
  local need=$(( S0[${m}_$c] * RATIO / 100 + 60 ))
  if (( now + need > DEADLINE )); then echo "SKIP seed $s $m $c (and all later calls): needs ~${need}s, $(( DEADLINE - now ))s left ($(date -u +%T))"; stopped=1; return 1; fi
  echo "START seed $s $m $c $(date -u +%T) need~${need}s load $(cat /proc/loadavg)"; echo "$(date -u +%T) start seed$s $m $c $(cat /proc/loadavg)" >> $LOG/loadavg_seed$s.txt
  drive $s $m $c > $LOG/log_seed${s}_${m}_$c.txt 2>&1
  local rc=$? took=$(( $(date -u +%s) - now ))
  echo "END seed $s $m $c rc $rc $(date -u +%T) ${took}s load $(cat /proc/loadavg)"; echo "$(date -u +%T) end seed$s $m $c rc$rc $(cat /proc/loadavg)" >> $LOG/loadavg_seed$s.txt
  RATIO=$(( (took - 30) * 110 / S0[${m}_$c] ))
  (( rc == 0 )) && echo "$m $c" >> $LOG/cohorts_seed$s.txt
}
finished() { # seed method n_cohorts -> "complete" | "partial COHORTS" | ""
  local cs=$(awk -v m=$2 '$1 == m {print $2}' $LOG/cohorts_seed$1.txt 2>/dev/null | tr '\n' ' ')
  local n=$(echo $cs | wc -w)
  if (( n == $3 )); then echo complete; elif (( n > 0 )); then echo "partial $cs"; fi
}
aggregate() { # seed "methods" "cohorts" snapshot-name
  echo "$(date -u +%T) aggregate seed$1 $2 / $3 $(cat /proc/loadavg)" >> $LOG/loadavg_seed$1.txt
  echo "AGGREGATE seed $1: $2 / $3 $(date -u +%T)"; drive $1 "$2" "$3" > $LOG/log_seed$1_aggregate_$4.txt 2>&1; echo "rc $? $(date -u +%T)"
  mkdir -p $LOG/agg/seed$1_$4 && cp $OUT/coattn_mcat5_seed$1_simbags/{results.csv,predictions.parquet,failed_units.csv,summary.md,config.yaml} $LOG/agg/seed$1_$4/
}
# cohort order: the cohorts of the seed-0 claims first (GBMLGG: both below late fusion; LUAD: motcat +0.045), then
# cheapest first, so that a seed cut short by time still tests them
for s in 1 2; do for c in gbmlgg luad ucec brca blca; do run_cohort $s motcat $c; done; done
for s in 1 2; do for c in gbmlgg luad brca blca; do run_cohort $s survpath $c; done; done
for s in 1 2; do
  complete=""; [ -s $LOG/done_seed$s.txt ] && complete=$(tr '\n' ' ' < $LOG/done_seed$s.txt)
  for m in motcat survpath; do
    n=5; [ $m = survpath ] && n=4
    f=$(finished $s $m $n)
    if [ "$f" = complete ]; then complete="$complete $m"; elif [ -n "$f" ]; then aggregate $s $m "${f#partial }" partial_$m; fi
  done
  [ -n "$complete" ] && aggregate $s "$complete" "blca brca gbmlgg luad ucec" complete
done
echo ALLDONE $(date -u +%T)
