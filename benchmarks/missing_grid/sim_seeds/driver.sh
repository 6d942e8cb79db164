#!/bin/bash
# Runs the phases of queue.txt one at a time (line i = "seed|method|method..."); the queue is re-read
# before each phase so phases can be appended or removed while it runs. Logs user CPU per phase.
cd /work/wt/h23d
export PYTHONPATH=/work/wt/h23d/src OMP_NUM_THREADS=1
PY=/work/main/.venv/bin/python
R=/work/runs/h23d
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
