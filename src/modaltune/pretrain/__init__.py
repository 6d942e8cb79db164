"""Multimodal self-supervised pretraining (Symile, pairwise CLIP, MIRROR) on a fold's training patients.

``modaltune pretrain CONFIG --out DIR`` (:func:`modaltune.pretrain.run.pretrain`) trains one encoder
per modality on every training patient of a fold (labelled or not, with or without every modality),
saves them without pickle and writes retrieval metrics on the fold's held-out patients; the
``pretrained_probe`` method (:mod:`modaltune.methods.pretrained_probe`) embeds with them in
``modaltune benchmark``. The objectives are the pure functions of :mod:`modaltune.losses.contrastive`.
(Pretraining ModalTune's slide backbone is another thing: :mod:`modaltune.modaltune.pretrain`.)
"""
from modaltune.pretrain.config import PretrainConfig

__all__ = ["PretrainConfig"]
