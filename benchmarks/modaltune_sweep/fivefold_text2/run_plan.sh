cd /work/wt/h25l
export PYTHONPATH=src OMP_NUM_THREADS=1
P=benchmarks/modaltune_sweep/preregistered_5fold_text2.yaml
for s in 0 1 2; do
  now=$(date -u +%H%M); if [ "$now" -ge 1815 ]; then echo "seed $s skipped at $now"; break; fi
  echo "seed $s start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -v nice -n 10 /work/main/.venv/bin/python benchmarks/modaltune_sweep/run_fivefold.py --plan $P run --runs /work/runs/h25l --variant mt_text2 --seeds $s 2> /work/runs/h25l/time_seed$s.txt
  echo "seed $s end $(date -u +%T) rc $? load $(cut -d' ' -f1-3 /proc/loadavg)"
done
