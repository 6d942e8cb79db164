"""ModalTune label sentences: stage/TNM fragments from the patient record, fragment-list templates,
unknown fragments, missing fields omitted and counted, survival bins from training patients only."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")

from modaltune.data.dataset import CohortPreprocessor, PatientDataset, collate_patients
from modaltune.data.simulate import simulate_cohort
from modaltune.errors import ConfigError, InputError
from modaltune.methods import build_method
from modaltune.modaltune.text_targets import SentenceStats, label_sentences

SMALL = {"pathways": "builtin", "gene_mixer": {"token_dim": 8, "n_blocks": 1, "channel_hidden": 8}, "backbone_params": {"embed_dim": 16, "depth": 2, "num_heads": 2},
         "attn_dim": 8, "heads": 2, "ffn_dim": 8, "out_dim": 16, "drop_path": 0.0}

#: raw GDC strings (as the modaltune-json importer keeps them in patients.csv) and their verbalisation
RAW = [("Stage IIA", "T2", "N0 (i-)", "M0"), ("Stage IIIC", "T3", "N3a", "MX"), (None, "T1c", None, "M1")]
SPOKEN = [
    "Overall stage: stage two; Tumor stage status: tumor stage two; Lymph node status: cancer has not spread to lymph nodes; Distant metastasis status: no metastasis detected",
    "Overall stage: stage three; Tumor stage status: tumor stage three; Lymph node status: cancer has spread to lymph nodes, node stage three",  # MX: not assessable -> left out
    "Tumor stage status: tumor stage one; Distant metastasis status: distant metastasis detected",
]


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A tiny simulated cohort whose patient table also carries raw AJCC stage / T / N / M strings."""
    c = simulate_cohort(tmp_path_factory.mktemp("mtt") / "tiny", preset="tiny", seed=3, n_patients=20, sites=("BRCA",))
    ids = list(c.patient_ids)
    for col, k in (("ajcc_pathologic_stage", 0), ("ajcc_pathologic_t", 1), ("ajcc_pathologic_n", 2), ("ajcc_pathologic_m", 3)):
        c.patients[col] = [RAW[i % 3][k] for i in range(len(ids))]
    train = ids[:14]
    pp = CohortPreprocessor(c, modalities=["slide", "rna"]).fit(train)
    ds = PatientDataset(c, ids, pp, training=False, max_patches=16)
    return c, pp, ds, train


def _expected_survival_sentence(pp, b, r, spoken):
    edges = pp.info.task("survival").bin_edges
    t, e = float(b["targets"]["survival"]["time"][r]), int(b["targets"]["survival"]["event"][r])
    k = min(int(np.searchsorted(edges, t, side="right")) - 1, len(edges) - 2)
    rng = f"between {int(round(edges[k]))} and {int(round(edges[k + 1]))} months"
    surv = f"The patient died {rng}" if e else f"The patient was alive at last follow-up {rng}"
    return f"Cancer location: breast; {spoken}; Survival status: {surv}."


def test_stage_tnm_reach_the_models_kl_targets(staged):
    """Model level: the sentences the KL term embeds carry the verbalised stage / TNM of each patient."""
    _, pp, ds, _ = staged
    torch.manual_seed(0)
    m = build_method("modaltune", pp.info, **SMALL, supervised=0.0).eval()
    seen: list[str] = []
    orig = m.text_targets
    m.text_targets = lambda sents: (seen.extend(sents), orig(sents))[1]
    b = collate_patients([ds[i] for i in range(3)])
    with torch.no_grad():
        out = m(b)
        _, per = m.loss(b, out)
    expect = [_expected_survival_sentence(pp, b, r, SPOKEN[r]) for r in range(3) if bool(b["target_mask"]["survival"][r])]
    assert [s for s in seen if "Survival status" in s] == expect
    # and the KL value is the hand computation on exactly those sentences
    from modaltune.modaltune.text_targets import get_text_encoder

    enc = get_text_encoder(None)
    rows = [r for r in range(3) if bool(b["target_mask"]["survival"][r])]
    z = torch.from_numpy(enc.model.encode(expect, normalize_embeddings=True)).float() @ m.projector.weight.T
    z = z / z.norm(dim=1, keepdim=True)
    q = out["task_embeddings"]["survival"][rows]
    q = q / q.norm(dim=1, keepdim=True)
    p_ = torch.softmax(z, 1)
    kl = (p_ * (torch.log(p_) - torch.log_softmax(q, 1))).sum(1).mean()
    assert float(per["survival"]) == pytest.approx(10.0 * float(kl), rel=1e-4)
    # missing fields (patient 2: no stage, no N; patient 1: MX) were left out and counted
    st = m.sentence_stats.as_dict()
    assert st["n"]["missing"] >= 1 and st["m"]["missing"] >= 1 and st["stage"]["missing"] >= 1
    assert st["location"]["missing"] == 0


def test_fragment_list_templates_and_unknown_fragments(staged):
    _, pp, ds, _ = staged
    b = collate_patients([ds[i] for i in range(3)])
    stats = SentenceStats()
    sents, usable = label_sentences(b, pp.info.tasks, "subtype", ["location", "stage", "diagnosis"], stats=stats)
    names = pp.info.task("subtype").class_names
    stage = ["Overall stage: stage two; ", "Overall stage: stage three; ", ""]
    for r in range(3):
        if usable[r]:
            assert sents[r] == f"Cancer location: breast; {stage[r]}Cancer diagnosis: {names[int(b['targets']['subtype']['label'][r])].lower()}."
    assert stats.missing["stage"] == int(usable[2]) and stats.written["stage"] == int(usable[0]) + int(usable[1])
    # the general template: site + diagnosis + stage/TNM + survival, for the survival task too
    gen, _ = label_sentences(b, pp.info.tasks, "survival", "general")
    r = 0
    dx = names[int(b["targets"]["subtype"]["label"][r])].lower()
    assert gen[r] == _expected_survival_sentence(pp, b, r, f"Cancer diagnosis: {dx}; " + SPOKEN[0])
    # an override of the record column
    c2 = label_sentences(b, pp.info.tasks, "subtype", ["stage"], sentence_fields={"stage": "stage"})[0]  # the simulator's clinical 'Stage I..IV'
    assert all(s.startswith("Overall stage: stage ") or s == "" for s in c2)
    with pytest.raises(InputError, match="sentence_fields"):
        label_sentences(b, pp.info.tasks, "subtype", ["stage"], sentence_fields={"stage": "no_such_column"})
    with pytest.raises(ConfigError, match="fragment"):
        label_sentences(b, pp.info.tasks, "subtype", ["location", "tumour_size"])
    with pytest.raises(ConfigError, match="template"):
        label_sentences(b, pp.info.tasks, "subtype", "nonsense")
    # the same checks at build time: bad fragment names, templates for unknown tasks, bad field keys
    with pytest.raises(ConfigError, match="fragment"):
        build_method("modaltune", pp.info, **SMALL, templates={"survival": ["location", "grade"]})
    with pytest.raises(ConfigError, match="unknown task"):
        build_method("modaltune", pp.info, **SMALL, templates={"stage_task": "general"})
    with pytest.raises(ConfigError, match="sentence_fields"):
        build_method("modaltune", pp.info, **SMALL, sentence_fields={"grade": "grade"})


def test_batches_without_records_omit_stage_and_count_it(staged):
    _, pp, ds, _ = staged
    b = collate_patients([ds[i] for i in range(2)])
    b.pop("records")
    stats = SentenceStats()
    sents, usable = label_sentences(b, pp.info.tasks, "survival", "survival", stats=stats)
    assert all("stage" not in s.lower() for s in sents)
    assert stats.missing["stage"] == int(usable.sum()) and stats.written["survival"] == int(usable.sum())


def test_survival_bins_come_from_training_patients_only(staged):
    c, pp, _, train = staged
    from modaltune.data.splits import survival_bin_edges

    tt = c.targets(c.manifest.task("survival"))
    is_train = np.isin(np.asarray(c.patient_ids), train)
    expect = survival_bin_edges(np.where(tt.mask, tt.time, np.nan), tt.event, 4, mode="strict", train_mask=tt.mask & is_train)
    np.testing.assert_allclose(pp.info.task("survival").bin_edges, expect)
    # moving an evaluation patient's time far out changes nothing in the bins (nor in any sentence edge)
    ev = [p for p in c.patient_ids if p not in set(train)][0]
    old = c.patients.loc[ev, "survival_months"]
    try:
        c.patients.loc[ev, "survival_months"] = 10_000.0
        pp2 = CohortPreprocessor(c, modalities=["slide", "rna"]).fit(train)
        np.testing.assert_allclose(pp2.info.task("survival").bin_edges, pp.info.task("survival").bin_edges)
    finally:
        c.patients.loc[ev, "survival_months"] = old
