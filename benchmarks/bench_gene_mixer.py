"""Gene Mixer: bucketed batched-einsum per-pathway SNNs vs a Python loop over 331 nn.Linear stacks.

Uses the real ModalTune pathway file (shared/data/pathways/combine_comps.csv, 331 pathways over
4,999 genes) when present, else the simulator's built-in pathways. Measures forward and
forward+backward time per batch on CPU and checks both implementations give the same tokens.

    .venv/bin/python benchmarks/bench_gene_mixer.py [--batch 32] [--repeats 5] [--threads 1] [--out benchmarks/gene_mixer.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modaltune.encoders.omics import GeneMixer

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pathways" / "combine_comps.csv"


def load_pathways() -> tuple[int, list[np.ndarray], str]:
    if SHARED.exists():
        import pandas as pd

        df = pd.read_csv(SHARED, index_col=0)
        return df.shape[0], [np.flatnonzero(df[c].to_numpy() != 0) for c in df.columns], "shared/data/pathways/combine_comps.csv"
    from modaltune.data.simulate import builtin_pathways

    df = builtin_pathways()
    return df.shape[0], [np.flatnonzero(df[c].to_numpy() != 0) for c in df.columns], "modaltune builtin sim_pathways"


class LoopPathways(nn.Module):
    """Reference: one Sequential(Linear, ELU, Linear, ELU) per pathway, looped at forward time."""

    def __init__(self, gm: GeneMixer, gene_index: list[np.ndarray]):
        super().__init__()
        self.idx = [torch.as_tensor(i) for i in gene_index]
        nets = [None] * len(gene_index)
        for b, members in zip(gm.buckets, gm.bucket_members):
            for r, p in enumerate(members):
                n = len(gene_index[p])
                l1, l2 = nn.Linear(n, gm.token_dim), nn.Linear(gm.token_dim, gm.token_dim)
                with torch.no_grad():
                    l1.weight.copy_(b.w1[r, :n].T)
                    l1.bias.copy_(b.b1[r])
                    l2.weight.copy_(b.w2[r].T)
                    l2.bias.copy_(b.b2[r])
                nets[p] = nn.Sequential(l1, nn.ELU(), l2, nn.ELU())
        self.nets = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([net(x[:, i]) for net, i in zip(self.nets, self.idx)], dim=1)


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return float(np.median(t))


def _no_grad(model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).with_name("gene_mixer.json")))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    G, idx, source = load_pathways()
    gm = GeneMixer(G, idx).eval()
    loop = LoopPathways(gm, idx).eval()
    x = torch.randn(a.batch, G)
    with torch.no_grad():
        diff = float((gm.pathway_embeddings(x) - loop(x)).abs().max())

    def fwd_b():
        with torch.no_grad():
            gm.pathway_embeddings(x)

    def fwd_l():
        with torch.no_grad():
            loop(x)

    def bwd_b():
        gm.zero_grad()
        gm.pathway_embeddings(x).sum().backward()

    def bwd_l():
        loop.zero_grad()
        loop(x).sum().backward()

    n_first = sum(len(i) for i in idx) * gm.token_dim
    padded_first = sum(b.w1.numel() for b in gm.buckets)
    res = {
        "pathways_source": source,
        "n_genes": G,
        "n_pathways": len(idx),
        "pathway_size_min_median_max": [int(min(map(len, idx))), int(np.median(list(map(len, idx)))), int(max(map(len, idx)))],
        "n_buckets": len(gm.buckets),
        "batch": a.batch,
        "threads": a.threads,
        "max_abs_diff_tokens": diff,
        "params_total": int(sum(p.numel() for p in gm.parameters())),
        "params_pathway_nets_used": int(n_first + len(idx) * (gm.token_dim + gm.token_dim**2 + gm.token_dim)),
        "first_layer_padding_overhead": padded_first / n_first,
        "pathway_nets_forward_s": {"bucketed": _time(fwd_b, a.repeats), "loop": _time(fwd_l, a.repeats)},
        "pathway_nets_fwd_bwd_s": {"bucketed": _time(bwd_b, a.repeats), "loop": _time(bwd_l, a.repeats)},
        "full_gene_mixer_forward_s": _time(lambda: _no_grad(gm, x), a.repeats),
    }
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
