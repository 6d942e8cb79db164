"""configs/modaltune: every YAML loads with the project's config loader, and each paper config's
ModalTune rows build and train one step on a tiny slice of the REAL imported TCGA-BRCA cohort
(real RNA / clinical / stage strings, SIMULATED noise bags, reduced-size random-init backbones)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "modaltune").glob("*.yaml"))
PAPER = [p for p in CONFIGS if p.name.startswith("paper_")]

#: reduced sizes of the paper backbones (same depth, so the paper's interaction groups are used)
REDUCED = {
    "gigapath": {"embed_dim": 32, "depth": 12, "num_heads": 16, "ffn_dim": 32, "slide_ngrids": 64},
    "titan": {"embed_dim": 32, "depth": 6, "num_heads": 4, "attn_pooler_queries": 4, "attn_pooler_heads": 2},
}


def _load(path: Path, cohort_dir: Path | None = None, overrides: list[str] | None = None):
    """``load_config`` as the CLI does; the paper configs' cohort directories (cohorts/mt_*) are
    replaced by ``cohort_dir`` because the loader checks that they exist."""
    from modaltune.config import load_config, load_yaml
    from modaltune.training.experiment_config import BenchmarkConfig

    raw = load_yaml(path)
    over = list(overrides or [])
    if raw["data"].get("cohorts") and cohort_dir is not None:
        over.append(f"data.cohorts=[{cohort_dir}]")
    pw = (raw["data"].get("pathways") or {}).get("rna")
    if pw is not None:
        assert pw.endswith("shared/data/pathways/combine_comps.csv"), pw
        if not (path.parent / pw).is_file():  # no shared/ beside the repository: any pathway file will do for loading
            tmp = cohort_dir / "pathways.csv"
            tmp.write_text("gene,P1\nTP53,1\n")
            over.append(f"data.pathways.rna={tmp}")
    return load_config(path, BenchmarkConfig, overrides=over)


def test_every_modaltune_config_loads_and_names_registered_methods(tmp_path):
    from modaltune.methods.registry import get_method

    assert len(CONFIGS) >= 4 and len(PAPER) == 3
    for path in CONFIGS:
        cfg = _load(path, tmp_path)
        for m in cfg.methods:
            get_method(m.name)
        if path in PAPER:
            assert Path(cfg.data.pathways["rna"]).is_file(), cfg.data.pathways  # resolved (and checked) relative to the config file
            assert cfg.trainer.warmup_start_lr == 5e-6 and cfg.trainer.warmup_epochs == 10 and cfg.trainer.max_epochs == 15
            assert cfg.evaluation.probes and cfg.seeds == [0, 1, 2] and cfg.split.file == "modaltune_paper"
            mt = [m for m in cfg.methods if m.name == "modaltune"]
            assert [m.params["supervised"] for m in mt] == [0.0, 1.0] and "paper" in mt[0].display
            assert all("pathways" not in m.params for m in mt)  # one source of pathway lists: data.pathways
            assert cfg.trainer.max_patches == (15000 if "titan" in path.name else 25000)
            assert any(m.name == "gene_mixer" for m in cfg.methods)


@pytest.fixture(scope="module")
def brca_slices(shared_dir, tmp_path_factory):
    from modaltune.data.sources.modaltune_json import import_modaltune_json
    from modaltune.modaltune.realsim import attach_simulated_bags, small_cohort

    root = tmp_path_factory.mktemp("mtcfg")
    import_modaltune_json("brca", shared_dir, root / "brca")
    out = {}
    for backbone in ("gigapath", "titan"):
        d = small_cohort(root / "brca", root / f"brca_{backbone}", n={"train": 8, "val": 0, "test": 2})
        attach_simulated_bags(d, backbone=backbone, patches=(8, 16))
        out[backbone] = d
    return out


@pytest.mark.parametrize("path", PAPER, ids=[p.stem for p in PAPER])
def test_paper_config_modaltune_rows_train_one_step(path, brca_slices):
    from modaltune.data.cohort import Cohort
    from modaltune.data.dataset import CohortPreprocessor, PatientDataset, collate_patients
    from modaltune.methods import build_method

    cfg = _load(path, brca_slices["gigapath"])
    for mcfg in [m for m in cfg.methods if m.name == "modaltune"]:
        params = dict(mcfg.params)
        bb = params["backbone"]
        cohort = Cohort.load(brca_slices[bb])
        train = [str(p) for p in cohort.split("modaltune_paper").folds[0].train]
        pp = CohortPreprocessor(cohort, modalities=list(mcfg.modalities), bin_mode=cfg.data.bin_mode, pathways=dict(cfg.data.pathways)).fit(train)
        assert pp.info.pathways and len(pp.info.pathways["rna"]) > 100  # combine_comps.csv against the real PORPOISE genes
        # pan-cancer templates name only the tasks of the pan-cancer cohort that BRCA also has
        params["templates"] = {t: v for t, v in (params.get("templates") or {}).items() if t in {x.spec.name for x in pp.info.tasks}}
        params.update(checkpoint=None, random_init=True, backbone_params=REDUCED[bb], attn_dim=16, heads=4, ffn_dim=16,
                      gene_mixer={**params["gene_mixer"], "token_dim": 8, "channel_hidden": 8, "n_blocks": 1})
        torch.manual_seed(0)
        m = build_method("modaltune", pp.info, **params)
        assert [len(g) for g in m.adapter.groups] and m.adapter.groups == ([[0, 3], [4, 7], [8, 11]] if bb == "gigapath" else [[0, 1], [2, 3], [4, 5]])
        assert m.fusion == params["fusion"] and m.weights_source == "random_init"
        ds = PatientDataset(cohort, train, pp, training=True, max_patches=16)
        b = collate_patients([ds[i] for i in range(len(train))])
        before = {k: v.clone() for k, v in m.backbone.state_dict().items()}
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
        m.train()
        loss, per = m.loss(b, m(b))
        opt.zero_grad()
        loss.backward()
        opt.step()
        # protocol paper / paper+sup add the paper's General task (a KL-only term of its own)
        assert torch.isfinite(loss) and set(per) == {t.spec.name for t in pp.info.tasks} | {"general"}
        assert m.general_task and m.shared_fusion and m.variant in ("modaltune (paper: KL only)", "modaltune+sup")
        assert all(torch.equal(v, before[k]) for k, v in m.backbone.state_dict().items())
        # the real AJCC stage / TNM strings reached the survival label sentences
        st = m.sentence_stats.as_dict()
        assert st["stage"]["written"] + st["t"]["written"] > 0
        m.eval()
        with torch.no_grad():
            out = m(collate_patients([ds[0], ds[1]]))
        assert out["embedding"].shape == (2, 256 * len(pp.info.tasks)) and torch.isfinite(out["embedding"]).all()
