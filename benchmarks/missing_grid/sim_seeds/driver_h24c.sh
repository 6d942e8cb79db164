#!/bin/bash
# h24c continuation (issue 15): cmta, mm_lego (merge) and dispro, training seeds 1 and 2, resumed into copies of
# the lead's seed folders (cp -a /work/runs/lead/sim_grid_s{1,2} /work/runs/h24c/). Same loop as driver.sh:
# queue_h24c.txt line i = "seed|method label", re-read before each phase (so phases can be removed while it
# runs); a STOP file ends it between phases. Logs user CPU and load per phase.
cd /work/wt/h24c
export PYTHONPATH=/work/wt/h24c/src OMP_NUM_THREADS=1
PY=/work/main/.venv/bin/python
R=/work/runs/h24c
i=0
while true; do
  i=$((i+1))
  line=$(sed -n "${i}p" $R/queue.txt)
  [ -z "$line" ] && break
  [ -e $R/STOP ] && { echo "STOP before phase $i" >> $R/phases.log; break; }
  seed=${line%%|*}; rest=${line#*|}
  IFS='|' read -ra M <<< "$rest"
  out=$R/sim_grid_s$seed
  echo "$(date -u +%FT%TZ) start phase $i seed $seed methods ${M[*]} load $(cat /proc/loadavg)" >> $R/phases.log
  TIMEFORMAT="phase $i user %U sys %S wall %R"
  { time nice -n 10 $PY benchmarks/missing_grid/run_grid.py --config benchmarks/missing_grid/sim_grid.yaml \
      --cohort /work/runs/h20c/sim_demo --out $out --seeds $seed --methods "${M[@]}" >> $R/log_s$seed.txt 2>&1 ; } 2>> $R/phases.log
  echo "$(date -u +%FT%TZ) end phase $i load $(cat /proc/loadavg)" >> $R/phases.log
done
echo "$(date -u +%FT%TZ) driver done" >> $R/phases.log
