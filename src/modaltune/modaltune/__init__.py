"""ModalTune (Ramanathan et al., ICCV 2025): model, modal tokens, text targets and probe evaluation.

The registered method is ``modaltune`` (:mod:`modaltune.methods.modaltune`); see docs/modaltune.md.
"""
from .model import ModalTuneModel, Objectives
from .text_targets import RandomProjector, label_sentences, task_prompt
from .tokens import ModalTokenizer

__all__ = ["ModalTuneModel", "Objectives", "ModalTokenizer", "RandomProjector", "label_sentences", "task_prompt"]
