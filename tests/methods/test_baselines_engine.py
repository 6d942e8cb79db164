"""Every baseline trains and predicts through the engine on a tiny simulated cohort with missing modalities."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modaltune.data.cohort import Cohort
from modaltune.data.splits import SplitSet
from modaltune.training.trainer import fit, predict

FAST = {"max_epochs": 1, "progress_bar": False, "logger": "none", "checkpoint": False, "batch_size": 4}
SMALL = {
    "abmil": {"embed_dim": 32, "attn_dim": 16},
    "mean_pool": {},
    "transmil": {"embed_dim": 32, "num_heads": 2},
    "snn": {"hidden": [32, 32]},
    "omics_mlp": {"hidden": [32]},
    "gene_mixer": {"token_dim": 16, "n_blocks": 1, "channel_hidden": 8},
    "clinical_mlp": {"hidden": [16]},
    "late_fusion": {"slide_params": {"embed_dim": 32}, "omics_params": {"hidden": [32]}, "fusion_dim": 32},
    "coxnet": {"use_pca": True, "n_components": 4, "min_events": 2},
    "logistic": {"use_pca": True, "n_components": 4},
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from modaltune.data.simulate import simulate_cohort

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cohorts") / "tiny_baselines"
    simulate_cohort(
        out, preset="tiny", seed=1, n_patients=36, patches=(8, 24), slides_per_patient=(1, 1), n_folds=3,
        missing_rates={"slide": 0.2, "rna": 0.2, "clinical": 0.1},
    )
    cohort = Cohort.load(out)
    return cohort, SplitSet.load(out / "splits" / "kfold3.csv").folds[0]


@pytest.mark.parametrize("name", list(SMALL))
def test_baseline_fits_and_predicts_every_patient(sim, name):
    cohort, fold = sim
    avail = cohort.availability()
    ids = list(fold.test)
    data = None
    if name == "gene_mixer":
        from importlib import resources

        rna = [m.name for m in cohort.modalities if m.kind == "omics"][0]
        sim_pathways = resources.files("modaltune") / "resources" / "sim_pathways.csv"  # the simulator's own genes
        data = {"cohorts": [str(cohort.root)], "pathways": {rna: str(sim_pathways)}}
    fitted = fit(cohort, fold, name, params=SMALL[name], trainer=FAST, data=data)
    pred = predict(fitted, cohort, ids)
    assert sorted(pred["patient_id"].unique()) == sorted(ids)  # no patient dropped
    tasks = set(pred["task"])
    if name == "coxnet":
        assert tasks == {"survival"}
    elif name == "logistic":
        assert tasks == {"subtype"}
    else:
        assert tasks == {"subtype", "survival"}
    for t in tasks:
        sub = pred[pred["task"] == t]
        col = "risk" if t == "survival" else "prob_A"
        assert np.isfinite(sub[col].to_numpy(float)).all(), (name, t)
    # the test patients include some without a slide / RNA, and they were predicted
    assert (~avail.loc[ids]).to_numpy().any()


def test_gene_mixer_on_the_data_layer_with_pathways(sim):
    """Gene Mixer on real batches: pathways tokenised against the simulated RNA genes, missing RNA kept."""
    from modaltune.data.dataset import CohortPreprocessor, PatientDataset, collate_patients
    from modaltune.data.simulate import builtin_pathways
    from modaltune.methods import build_method

    cohort, fold = sim
    rna = [m.name for m in cohort.modalities if m.kind == "omics"][0]
    prep = CohortPreprocessor(cohort, modalities=[rna], pathways={rna: builtin_pathways()}).fit(list(fold.train))
    info = prep.info
    ds = PatientDataset(cohort, list(fold.train), prep, training=True)
    batch = collate_patients([ds[i] for i in range(len(ds))])
    assert not batch["modality_mask"][rna].all()  # some patients lack RNA
    torch.manual_seed(0)
    model = build_method("gene_mixer", info, token_dim=16, n_blocks=1, channel_hidden=8)
    assert model.encoder.mixer.n_pathways == len(info.pathways[rna].names)
    out = model(batch)
    assert out["embedding"].shape == (len(ds), 16)
    loss, _ = model.loss(batch, out)
    loss.backward()
    assert torch.isfinite(loss)
