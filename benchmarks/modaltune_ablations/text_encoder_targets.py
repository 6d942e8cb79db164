"""MiniLM vs all-mpnet-base-v2: how far apart are ModalTune's text targets of *real* TCGA labels?

The ablation cohort is simulated and its classes are called "A" / "B", so its diagnosis targets say
little about the encoders (``text_encoder_separability.json``, from the ablation units, has those).
This script embeds the label sentences ModalTune writes for the real subtype tasks (full diagnosis
names, ``class_label_sentences``) and for survival bins (``SentenceBuilder`` with fixed edges
0 / 12 / 24 / 48 / 240 months, died, location only), passes them through the same frozen random
projector as a model (``RandomProjector(text_dim, out_dim 256, seed 0)``) and writes their pairwise
cosine, per encoder, to ``text_encoder_real_labels.json``::

    python benchmarks/modaltune_ablations/text_encoder_targets.py --mpnet /work/runs/h21d/all-mpnet-base-v2

Cosine is of unit vectors in the projected 256-d space (dimensionless); lower off-diagonal cosine =
targets further apart = a stronger KL signal between classes.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "text_encoder_real_labels.json"
TASKS = {"BRCA": ["IDC", "ILC"], "GBMLGG": ["GBM", "LGG"], "NSCLC": ["LUAD", "LUSC"], "RCC": ["KIRC", "KIRP", "KICH"]}
#: site written in "Cancer location: ..." per task (the first project of the cohort)
SITES = {"BRCA": "BRCA", "GBMLGG": "GBM", "NSCLC": "LUAD", "RCC": "KIRC"}
EDGES = np.array([0.0, 12.0, 24.0, 48.0, 240.0])


def targets(encoder_path: str | None, sentences: list[str], out_dim: int = 256):
    """(N, out_dim) projected unit targets, as ModalTuneModel.text_targets computes them."""
    from modaltune.modaltune.text_targets import RandomProjector, get_text_encoder

    enc = get_text_encoder(encoder_path)
    t = enc.encode(sentences)
    return RandomProjector(int(enc.dim), out_dim, seed=0)(t).numpy().astype(np.float64), int(enc.dim)


def offdiag(Z: np.ndarray) -> dict:
    cos = Z @ Z.T
    off = cos[~np.eye(len(Z), dtype=bool)]
    return {"cosine": cos.round(4).tolist(), "max_offdiag_cosine": round(float(off.max()), 4), "mean_offdiag_cosine": round(float(off.mean()), 4)}


def main() -> None:
    from modaltune.data.text import SentenceBuilder
    from modaltune.modaltune.text_targets import class_label_sentences

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mpnet", required=True, help="local all-mpnet-base-v2 folder (get_mpnet.sh)")
    a = ap.parse_args()
    sb = SentenceBuilder(edges=EDGES, time_unit="months")
    mids = [(EDGES[k] + EDGES[k + 1]) / 2 for k in range(len(EDGES) - 1)]
    rep: dict = {"what": __doc__.split("\n\n")[1].replace("\n", " "), "survival_edges_months": EDGES.tolist(), "encoders": {}}
    for enc_name, path in (("all-MiniLM-L6-v2", None), ("all-mpnet-base-v2", a.mpnet)):
        e: dict = {}
        for task, classes in TASKS.items():
            sents = class_label_sentences(SITES[task], classes)
            Z, dim = targets(path, sents)
            e[f"{task} subtype"] = {"sentences": sents, **offdiag(Z)}
            surv = [sb.sentence({"site": SITES[task], "time": float(m), "event": 1}, ["location", "survival"]) for m in mids]
            Z, dim = targets(path, surv)
            e[f"{task} survival bins"] = {"sentences": surv, **offdiag(Z),
                                          "neighbour_cosine": [round(float(Z[k] @ Z[k + 1]), 4) for k in range(len(Z) - 1)]}
        rep["encoders"][enc_name] = {"text_dim": dim, "tasks": e}
    OUT.write_text(json.dumps(rep, indent=2))
    for enc_name, v in rep["encoders"].items():
        print(enc_name, v["text_dim"], {t: x["max_offdiag_cosine"] for t, x in v["tasks"].items()})


if __name__ == "__main__":
    main()
