"""Label sentences: verbalisation of stage/TNM/survival and templates."""
import numpy as np
import pytest

from modaltune.data.text import SentenceBuilder, class_sentences, survival_phrase, verbalize_m, verbalize_n, verbalize_stage, verbalize_t


@pytest.mark.parametrize("raw,expect", [("Stage IIA", "stage two"), ("Stage IV", "stage four"), ("stage i", "stage one"), ("Stage X", None), (None, None), (float("nan"), None)])
def test_stage(raw, expect):
    assert verbalize_stage(raw) == expect


def test_tnm():
    assert verbalize_t("T2b") == "tumor stage two"
    assert verbalize_t("Tis") == "tumor in situ"
    assert verbalize_n("N0 (i-)") == "cancer has not spread to lymph nodes"
    assert verbalize_n("N2a") == "cancer has spread to lymph nodes, node stage two"
    assert verbalize_m("M0") == "no metastasis detected"
    assert verbalize_m("M1b") == "distant metastasis detected"
    assert verbalize_m("MX") is None


def test_survival_phrase_uses_bins():
    edges = np.array([0.0, 15.0, 27.0, 50.0, 100.0])
    assert survival_phrase(20.0, 1, edges) == "The patient died between 15 and 27 months"
    assert survival_phrase(60.0, 0, edges) == "The patient was alive at last follow-up between 50 and 100 months"


def test_general_sentence_and_missing_fragments():
    b = SentenceBuilder(columns={"diagnosis": "dx", "stage": "stage", "t": "t", "n": "n", "m": "m"}, edges=np.array([0.0, 15, 27, 50, 100]))
    rec = {"site": "BRCA", "dx": "Infiltrating duct carcinoma", "stage": "Stage IIA", "t": "T2", "n": "N0 (i-)", "m": None, "time": 20, "event": 1}
    assert b.sentence(rec) == (
        "Cancer location: breast; Cancer diagnosis: infiltrating duct carcinoma; Overall stage: stage two; "
        "Tumor stage status: tumor stage two; Lymph node status: cancer has not spread to lymph nodes; "
        "Survival status: The patient died between 15 and 27 months."
    )
    assert b.sentence(rec, "diagnosis") == "Cancer location: breast; Cancer diagnosis: infiltrating duct carcinoma."


def test_survival_template_requires_training_bins():
    with pytest.raises(ValueError, match="training"):
        SentenceBuilder().sentence({"site": "BRCA", "time": 3, "event": 0}, "survival")


def test_class_sentences():
    # abbreviations are written as full diagnosis names (issue 17: "idc"/"ilc" targets had cosine 0.90);
    # unknown class names are written lower-cased as given
    assert class_sentences("LUAD", ["LUAD", "LUSC", "Other X"]) == ["Cancer location: lung; Cancer diagnosis: lung adenocarcinoma.",
                                                                   "Cancer location: lung; Cancer diagnosis: lung squamous cell carcinoma.",
                                                                   "Cancer location: lung; Cancer diagnosis: other x."]
    assert SentenceBuilder().sentence({"site": "BRCA", "diagnosis": " IDC "}, "diagnosis") == "Cancer location: breast; Cancer diagnosis: invasive ductal carcinoma."
