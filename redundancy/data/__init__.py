"""Corpora, file formats, tasks and splits."""

from .base import UNSEEN_LABEL, Split, Task, label_vocabulary
from .brown import GENRES, BrownDocument, fetch_brown, read_brown
from .formats import read_conll, read_glue, read_glue_file, read_word_label
from .tasks import list_tasks, load_task, task_summary
from .universal import UNIVERSAL_TAGS, brown_to_universal, strip_markers

__all__ = [
    "GENRES",
    "UNIVERSAL_TAGS",
    "UNSEEN_LABEL",
    "BrownDocument",
    "Split",
    "Task",
    "brown_to_universal",
    "fetch_brown",
    "label_vocabulary",
    "list_tasks",
    "load_task",
    "read_brown",
    "read_conll",
    "read_glue",
    "read_glue_file",
    "read_word_label",
    "strip_markers",
    "task_summary",
]
