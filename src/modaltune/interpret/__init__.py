"""modaltune.interpret: attention maps of the Modal Adapter and integrated gradients over pathways.

``attention_maps(model, batch, task)`` (no extra needed); ``pathway_attributions(model, batch, task)``
needs captum (``pip install 'modaltune[interpret]'``, imported lazily).
"""
from .attention import attention_maps, recording


def pathway_attributions(*args, **kwargs):
    """See :func:`modaltune.interpret.integrated_gradients.pathway_attributions` (captum imported lazily)."""
    from .integrated_gradients import pathway_attributions as _pa

    return _pa(*args, **kwargs)


__all__ = ["attention_maps", "recording", "pathway_attributions"]
