"""PatientDataset / collate_patients: the batch contract of docs/ARCHITECTURE.md."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from modaltune.data.bags import write_bag_h5
from modaltune.data.dataset import (
    CohortInfo,
    CohortPreprocessor,
    PatientDataset,
    bag_cache_fits,
    collate_patients,
    summarize_exclusions,
)
from modaltune.data.splits import survival_bin_edges
from modaltune.errors import InputError
from modaltune.testing.cohort import PATIENTS, D, make_cohort


@pytest.fixture()
def cohort(tmp_path):
    return make_cohort(tmp_path / "toy")


TRAIN = PATIENTS[:8]
TEST = PATIENTS[8:]


def test_info_dims_and_tasks(cohort):
    prep = CohortPreprocessor(cohort).fit(TRAIN)
    info = prep.info
    assert isinstance(info, CohortInfo)
    assert info.slide_dim == D and info.slide_modality == "wsi"
    assert info.omics_dims == {"rna": 5} and info.omics_feature_names["rna"][0] == "TP53"
    assert info.clinical_dim == 2 + 2 + 3  # age+missing, stage+missing, F/M/missing
    assert info.clinical_modality == "clinical" and info.text_modality == "report"
    assert info.text and info.sites == ["A", "B"] and info.modalities == ["wsi", "rna", "clinical", "report"]
    sub, os_, score = info.tasks
    assert sub.n_classes == 2 and sub.class_counts == {"x": 3, "y": 4}  # P06 (x) excluded from train counts
    assert os_.n_classes == 2 and os_.bin_edges.shape == (3,)
    assert score.n_classes is None


def test_batch_contract_shapes_dtypes_masks(cohort):
    prep = CohortPreprocessor(cohort).fit(TRAIN)
    ds = PatientDataset(cohort, PATIENTS, prep, training=False)
    batch = collate_patients([ds[i] for i in range(len(ds))])
    B = 12
    assert batch["patient_id"] == PATIENTS and batch["site"][0] == "A" and batch["site"][-1] == "B"
    s = batch["slide"]
    n_max = 5 + 0 + 5 + 1  # P00: two slides of 5 and 6 patches; the longest otherwise is P11: 16
    n_max = max(n_max, 5 + 11)
    assert s["features"].shape == (B, n_max, D) and s["features"].dtype == torch.float16
    assert s["coords"].dtype == torch.long and s["coords"].shape == (B, n_max, 2)
    assert s["mask"].dtype == torch.bool
    assert s["mask"].sum(1).tolist() == [11, 0, 0] + [5 + i for i in range(3, 12)]
    assert (s["features"][~s["mask"]] == 0).all()
    mm = batch["modality_mask"]
    assert mm["wsi"].tolist() == [i not in (1, 2) for i in range(B)]
    assert mm["rna"].tolist() == [i != 3 for i in range(B)]
    assert mm["clinical"].tolist() == [i != 4 for i in range(B)]
    assert mm["report"].tolist() == [i != 5 for i in range(B)]
    assert (batch["omics"]["rna"][3] == 0).all() and batch["omics"]["rna"].dtype == torch.float32
    assert (batch["omics"]["rna"][:, 4] == 0).all()  # constant gene -> 0
    assert torch.isfinite(batch["omics"]["rna"]).all() and torch.isfinite(batch["clinical"]).all()
    assert batch["clinical"].shape == (B, 7) and batch["text"][5] == "" and batch["text"][0] == "report of P00"
    t, tm = batch["targets"], batch["target_mask"]
    assert t["subtype"]["label"].dtype == torch.long and t["subtype"]["label"][6] == -1 and not tm["subtype"][6]
    assert t["subtype"]["label"][:4].tolist() == [0, 1, 0, 1]
    assert not tm["os"][7] and tm["os"].sum() == 11 and t["os"]["time"].dtype == torch.float32
    assert t["os"]["bin"].dtype == torch.long and set(t["os"]["bin"].tolist()) <= {0, 1}
    assert t["score"]["value"].tolist() == [float(i) for i in range(12)] and tm["score"].all()


def test_omics_scaled_with_train_statistics_only(cohort):
    prep = CohortPreprocessor(cohort, modalities=["rna"]).fit(TRAIN)
    rna = cohort.omics["rna"]
    tr = rna.loc[[p for p in TRAIN if p in rna.index]]
    ds = PatientDataset(cohort, ["P09"], prep, training=False)
    got = ds[0]["omics"]["rna"].numpy()
    expect = ((rna.loc["P09"] - tr.mean()) / tr.std(ddof=0)).to_numpy()[:4]
    np.testing.assert_allclose(got[:4], expect, rtol=1e-5)
    # changing a test patient's values does not change the training patients' encoding
    before = PatientDataset(cohort, ["P00"], prep, training=False)[0]["omics"]["rna"]
    cohort.omics["rna"].loc["P09"] = 1e6
    prep2 = CohortPreprocessor(cohort, modalities=["rna"]).fit(TRAIN)
    after = PatientDataset(cohort, ["P00"], prep2, training=False)[0]["omics"]["rna"]
    assert torch.equal(before, after)


def test_survival_bins_strict_use_training_only(cohort):
    prep = CohortPreprocessor(cohort, modalities=[], tasks=["os"]).fit(TRAIN)
    tt = cohort.targets("os")
    is_train = np.isin(cohort.patient_ids, TRAIN) & tt.mask
    expect = survival_bin_edges(tt.time, tt.event, 2, mode="strict", train_mask=is_train)
    np.testing.assert_allclose(prep.info.tasks[0].bin_edges, expect)
    # uncensored test patients' times change: strict edges do not move (the outer edge covers
    # every patient by construction, so it may)
    cohort.patients.loc["P08", "time"] = 0.1
    cohort.patients.loc["P10", "time"] = 0.2
    edges2 = CohortPreprocessor(cohort, modalities=[], tasks=["os"]).fit(TRAIN).info.tasks[0].bin_edges
    np.testing.assert_allclose(edges2, expect)
    paper = CohortPreprocessor(cohort, modalities=[], tasks=["os"], bin_mode="paper").fit(TRAIN).info.tasks[0].bin_edges
    tt = cohort.targets("os")
    np.testing.assert_allclose(paper, survival_bin_edges(tt.time, tt.event, 2, mode="paper"))
    assert paper[1] < expect[1]


def test_patch_cap_in_dataset_eval_fixed_train_varies(cohort):
    prep = CohortPreprocessor(cohort, modalities=["wsi"]).fit(TRAIN)
    ev = PatientDataset(cohort, ["P11"], prep, training=False, max_patches=4, seed=1)
    a = ev[0]["slide"]["features"]
    ev.set_epoch(5)
    assert a.shape == (4, D) and torch.equal(a, ev[0]["slide"]["features"])
    tr = PatientDataset(cohort, ["P11"], prep, training=True, max_patches=4, seed=1)
    seen = set()
    for e in range(5):
        tr.set_epoch(e)
        seen.add(tuple(tr[0]["slide"]["coords"].flatten().tolist()))
    assert len(seen) > 1


def test_bag_cache_same_samples_and_no_rereads(cohort, monkeypatch):
    """cache_bags=True: the same patches as reading from disk, every epoch, train and eval, capped or
    not; files are read once per patient; the cached arrays are never handed out."""
    import modaltune.data.dataset as dsmod

    prep = CohortPreprocessor(cohort, modalities=["wsi"]).fit(TRAIN)
    ids = ["P00", "P01", "P05", "P11"]  # P00 two slides, P01 no slide
    for training, cap in [(True, 4), (False, 4), (True, None), (False, None)]:
        plain = PatientDataset(cohort, ids, prep, training=training, max_patches=cap, seed=3)
        cached = PatientDataset(cohort, ids, prep, training=training, max_patches=cap, seed=3, cache_bags=True)
        for e in range(3):
            plain.set_epoch(e)
            cached.set_epoch(e)
            for i in range(len(ids)):
                a, b = plain[i]["slide"], cached[i]["slide"]
                assert torch.equal(a["features"], b["features"]) and torch.equal(a["coords"], b["coords"])
    reads = []
    real = dsmod.load_patient_bag
    monkeypatch.setattr(dsmod, "load_patient_bag", lambda paths, **kw: reads.append(tuple(paths)) or real(paths, **kw))
    ds = PatientDataset(cohort, ids, prep, training=True, max_patches=4, cache_bags=True)
    for e in range(3):
        ds.set_epoch(e)
        [ds[i] for i in range(len(ids))]
    assert len(reads) == 3 and len(set(reads)) == 3  # 3 patients with slides, each read once
    ev = PatientDataset(cohort, ["P05"], prep, training=False, cache_bags=True)
    x = ev[0]["slide"]["features"]
    x.zero_()  # a model writing into its input must not change the cache
    assert ev[0]["slide"]["features"].abs().sum() > 0


def test_bag_cache_fits_budget(cohort):
    prep = CohortPreprocessor(cohort, modalities=["wsi"]).fit(TRAIN)
    total = sum(Path(p).stat().st_size for pid in PATIENTS for p in (prep.slide_paths.get(pid) or []))
    assert bag_cache_fits(prep, PATIENTS) and bag_cache_fits(prep, PATIENTS, budget_bytes=total)
    assert not bag_cache_fits(prep, PATIENTS, budget_bytes=total - 1)
    assert not bag_cache_fits(prep, ["P01", "P02"])  # no slides: nothing to cache


def test_datamodule_cache_auto_only_without_workers(cohort):
    from modaltune.training.datamodule import CohortDataModule

    auto = CohortDataModule(cohort, TRAIN, TEST, modalities=["wsi"], tasks=["subtype"])
    assert auto.dataset(TRAIN, True).cache_bags
    assert not auto.predict_loader(TEST).dataset.cache_bags  # one pass: never cached
    workers = CohortDataModule(cohort, TRAIN, TEST, modalities=["wsi"], tasks=["subtype"], num_workers=2)
    assert not workers.dataset(TRAIN, True).cache_bags
    off = CohortDataModule(cohort, TRAIN, TEST, modalities=["wsi"], tasks=["subtype"], cache_bags=False)
    assert not off.dataset(TRAIN, True).cache_bags


def test_dataloader_with_workers(cohort):
    prep = CohortPreprocessor(cohort).fit(TRAIN)
    ds = PatientDataset(cohort, TEST, prep, training=True, max_patches=6)
    batches = list(DataLoader(ds, batch_size=3, collate_fn=collate_patients, num_workers=2))
    assert [b["patient_id"] for b in batches] == [TEST[:3], TEST[3:]]
    assert batches[0]["slide"]["features"].shape == (3, 6, D)


def test_all_missing_slides_batch_is_well_formed(cohort):
    prep = CohortPreprocessor(cohort).fit(TRAIN)
    ds = PatientDataset(cohort, ["P01", "P02"], prep, training=False)
    b = collate_patients([ds[0], ds[1]])
    assert b["slide"]["features"].shape == (2, 1, D) and not b["slide"]["mask"].any()
    assert b["slide"]["features"].dtype == torch.float16


def test_errors_name_the_problem(cohort, tmp_path):
    with pytest.raises(InputError, match="unknown modality 'dna'"):
        CohortPreprocessor(cohort, modalities=["dna"])
    with pytest.raises(InputError, match="unknown task 'grade'"):
        CohortPreprocessor(cohort, tasks=["grade"])
    prep = CohortPreprocessor(cohort).fit(TRAIN)
    with pytest.raises(InputError, match="not in cohort"):
        PatientDataset(cohort, ["nobody"], prep, training=False)
    cohort.clinical.loc["P10", "age"] = 130.0
    with pytest.raises(InputError, match=r"patient 'P10', field 'age'.*above the schema maximum 120"):
        CohortPreprocessor(cohort).fit(TRAIN)
    cohort.clinical.loc["P10", "age"] = 60.0
    # a bag with the wrong dim is caught when read, naming the file
    bad = cohort.resolve_path("bags/P09_0.h5")
    write_bag_h5(bad, np.zeros((3, D + 1), np.float16), np.zeros((3, 2), np.int64), patch_size_level0=256, encoder="toyenc")
    ds = PatientDataset(cohort, ["P09"], CohortPreprocessor(cohort).fit(TRAIN), training=False)
    with pytest.raises(InputError, match=r"P09_0\.h5.*feature dim 9 does not match the cohort's feature_dim 8"):
        ds[0]


def test_pathways_in_info_and_batch(cohort):
    membership = pd.DataFrame({"gene": ["TP53", "MYC", "BRCA1", "XYZ"], "p53": [1, 0, 1, 0], "myc": [0, 1, 0, 0], "ghost": [0, 0, 0, 1]})
    prep = CohortPreprocessor(cohort, modalities=["rna"], pathways={"rna": membership}).fit(TRAIN)
    tok = prep.info.pathways["rna"]
    assert tok.names == ["p53", "myc"] and tok.dropped == ["ghost"]
    ds = PatientDataset(cohort, TEST, prep, training=False)
    b = collate_patients([ds[0], ds[1]])
    assert [ix.tolist() for ix in b["pathways"]["rna"]] == [[0], [2]]


def test_summarize_exclusions_counts_and_reasons(cohort):
    rep = summarize_exclusions(cohort)
    d = rep.to_dict()
    assert d["n_patients"] == 12
    assert d["modality"]["wsi"] == {"no slide listed": 1, "expected feature file missing": 1}
    assert d["modality"]["rna"] == {"not in omics table": 1}
    assert d["modality"]["clinical"] == {"no clinical values": 1}
    assert d["modality"]["report"] == {"no text": 1}
    assert d["task"]["subtype"] == {"excluded value '-1'": 1}
    assert d["task"]["os"] == {"missing time": 1}
    assert set(rep.patients.loc[rep.patients["name"] == "wsi", "patient_id"]) == {"P01", "P02"}
    assert "wsi: 1 (no slide listed)" in str(rep)
