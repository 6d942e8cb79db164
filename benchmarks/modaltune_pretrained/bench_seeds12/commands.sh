#!/usr/bin/env bash
# Re-run (2026-12-04, task h21h) of the 3-seed extension (seeds 1, 2) of configs/modaltune/sim_pretrained.yaml:
# the modaltune and late_fusion entries of the config, unchanged, plus evaluation.compare between them.
# Run root /work/runs/h21h; the pretrained checkpoint runs/mt_sim_pre/slide_encoder_pretrained.pt (and its .json)
# was copied from the seed-0 re-run /work/runs/h21f (step 1 of ../commands.sh), sha256
# 0bbeed5b08ffda6ec317123718d773de8ad59ab0e0fbe98d65b070b9cbc8132f; its .json equals ../slide_encoder_pretrained.pt.json.
# Code: commit 0da534c (git.json). Wrapped in /usr/bin/time -v (timing_loadavg.txt).
# Combined 3-seed numbers: python benchmarks/modaltune_pretrained/combine_seeds.py \
#   benchmarks/modaltune_pretrained/bench_seed0/results.csv benchmarks/modaltune_pretrained/bench_seeds12/results.csv \
#   --out benchmarks/modaltune_pretrained/bench_seeds12/three_seeds.json
set -euo pipefail
REPO=/work/wt/h21h
cd /work/runs/h21h
export PYTHONPATH=$REPO/src OMP_NUM_THREADS=1
PY=/work/main/.venv/bin/python
MT='{name: modaltune, label: "modaltune (pretrained frozen backbone)", modalities: [slide, rna], params: {checkpoint: runs/mt_sim_pre/slide_encoder_pretrained.pt, pathways: builtin, gene_mixer: {token_dim: 32, n_blocks: 2, channel_hidden: 32}, backbone_params: {embed_dim: 64, depth: 3, num_heads: 4}, out_dim: 64, kl: 1.0, supervised: 1.0}}'
LF='{name: late_fusion, label: "late_fusion (abmil+snn)", modalities: [slide, rna], params: {slide_params: {embed_dim: 64, attn_dim: 32}, fusion_dim: 64}}'
cat /proc/loadavg > bench_seeds12_loadavg_start.txt
nice -n 10 $PY -m modaltune.cli benchmark $REPO/configs/modaltune/sim_pretrained.yaml --out runs/mt_sim_pre/bench_seeds12 --workers 1 \
  --set 'seeds=[1,2]' --set "methods=[$MT, $LF]" \
  --set 'evaluation.compare=[["modaltune (pretrained frozen backbone)", "late_fusion (abmil+snn)"]]'
cat /proc/loadavg > bench_seeds12_loadavg_end.txt
