"""modaltune.interpret: attention heatmaps on the slide and integrated-gradients attributions.

Public API (no private imports needed):

- :func:`explain_patients` (``modaltune explain``): heatmaps, top-k tiles and attribution charts
  for patients of a cohort, from a fitted model;
- :func:`patient_batch`: the model-ready batch of chosen patients;
- :func:`slide_attention`: per-patch attention of ABMIL / TransMIL / ModalTune;
- :func:`render_heatmap`, :func:`patch_cells`: drawing patch weights over a thumbnail or the grid;
- :func:`input_attributions`, :func:`pathway_totals`: IG over omics genes and clinical fields;
- :func:`attention_maps`, :func:`pathway_attributions`: ModalTune's adapter maps and pathway-token IG.

IG needs captum (``pip install 'modaltune[interpret]'``, imported lazily); thumbnails and tiles need
the ``[wsi]`` extra.
"""
from .attention import attention_maps, recording
from .attributions import input_attributions, pathway_totals
from .batch import patient_batch
from .explain import explain_patients, fold_patients
from .heatmap import patch_cells, render_heatmap
from .slide_attention import PatchAttention, slide_attention


def pathway_attributions(*args, **kwargs):
    """See :func:`modaltune.interpret.integrated_gradients.pathway_attributions` (captum imported lazily)."""
    from .integrated_gradients import pathway_attributions as _pa

    return _pa(*args, **kwargs)


__all__ = [
    "PatchAttention",
    "attention_maps",
    "explain_patients",
    "fold_patients",
    "input_attributions",
    "patch_cells",
    "pathway_attributions",
    "pathway_totals",
    "patient_batch",
    "recording",
    "render_heatmap",
    "slide_attention",
]
