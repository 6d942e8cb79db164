#!/bin/bash
# h24e: training seeds 1, 2 of the coattn_mcat5 protocol, one method per driver call (so a method-seed is either
# complete (25 units) or not started); a call starts only if its seed-0 cost x 1.3 fits before 09:35 UTC.
cd /work/wt/h24e
export PYTHONPATH=/work/wt/h24e/src OMP_NUM_THREADS=1
PY=/work/main/.venv/bin/python
OUT=/work/runs/h24e/tcga
DEADLINE=$(date -u -d "09:35" +%s)
declare -A EST=( [coxnet]=29 [snn]=65 [abmil]=392 [late_fusion]=564 [mcat]=596 [motcat]=891 [survpath]=1080 [porpoise]=491 [pathomic_fusion]=490 )
run_one() { # seed method
  local s=$1 m=$2 now=$(date -u +%s)
  local need=$(( EST[$m] * 13 / 10 ))
  if (( now + need > DEADLINE )); then echo "SKIP seed $s $m: needs ~${need}s, $(( DEADLINE - now ))s left ($(date -u +%T))"; return 1; fi
  echo "START seed $s $m $(date -u +%T) load $(cat /proc/loadavg)"; echo "$(date -u +%T) start seed$s $m $(cat /proc/loadavg)" >> /work/runs/h24e/loadavg_seed$s.txt
  nice -n 10 $PY benchmarks/run_tcga.py --configs coattn_mcat5 --simulated-bags --sim-dim 32 --sim-patches 16 32 --cohorts blca brca gbmlgg luad ucec --methods $m --tag seed$s --set trainer.max_epochs=4 --set "seeds=[$s]" --shared /work/shared --out $OUT --workers 1 > /work/runs/h24e/log_seed${s}_$m.txt 2>&1
  local rc=$?
  echo "END seed $s $m rc $rc $(date -u +%T) load $(cat /proc/loadavg)"; echo "$(date -u +%T) end seed$s $m rc$rc $(cat /proc/loadavg)" >> /work/runs/h24e/loadavg_seed$s.txt
  echo $m >> /work/runs/h24e/done_seed$s.txt
}
for m in late_fusion mcat coxnet snn porpoise pathomic_fusion abmil; do run_one 1 $m; done
for m in late_fusion mcat coxnet snn porpoise pathomic_fusion abmil; do run_one 2 $m; done
for m in motcat survpath; do run_one 1 $m; run_one 2 $m; done
echo ALLDONE $(date -u +%T)
