"""Pathway membership reaches pathway-token methods through the experiment config."""
import pandas as pd

from modaltune.data.simulate import simulate_cohort
from modaltune.training.experiment_config import DataConfig
from modaltune.training.trainer import fit, predict


def test_gene_mixer_fits_with_pathways_from_data_config(tmp_path):
    cohort = simulate_cohort(tmp_path / "sim", preset="tiny", seed=1)
    fold = cohort.split("kfold5").folds[0]
    data = DataConfig(cohorts=[str(tmp_path / "sim")], pathways={"rna": str(tmp_path / "sim" / "pathways.csv")})
    fitted = fit(cohort, fold=fold, method="gene_mixer", tasks=["subtype"], data=data,
                 trainer={"max_epochs": 1},
                 out_dir=tmp_path / "run")
    cov = pd.read_csv(tmp_path / "run" / "pathway_coverage_rna.csv")
    assert {"pathway", "n_expected", "n_found", "fraction"} <= set(cov.columns)
    assert len(cov) > 0 and (cov["n_found"] <= cov["n_expected"]).all()
    preds = predict(fitted, cohort, fold.test)
    assert len(preds) == len(fold.test)
