"""Corpora, file formats, tasks and splits."""

from .base import UNSEEN_LABEL, Split, Task, label_vocabulary

__all__ = ["UNSEEN_LABEL", "Split", "Task", "label_vocabulary"]
