"""Datasets as a few record types with deterministic splits.

Public API::

    from perlhf.data import load_task, prompts_of, TASKS, list_tasks
    task = load_task("taskmaster-coffee", data_dir="../shared/data")
    task.kind                       # "rating" | "pair" | "prompt" | "dialogue"
    task.splits["train"]            # list of records (perlhf.data.records)
    prompts_of(task, "train")       # distinct contexts as Prompt records, for RL

Rendering for a tokenizer lives in :mod:`perlhf.data.render`; Taskmaster's turn
rendering (``API_CALL name {json}``) in :mod:`perlhf.data.taskmaster`.
This package imports neither torch nor transformers at import time.
"""

from perlhf.data.records import (
    ROLES,
    SPLITS,
    Dialogue,
    Message,
    PreferencePair,
    Prompt,
    RatedResponse,
    Record,
)
from perlhf.data.tasks import (
    TASKS,
    TaskData,
    TaskInfo,
    get_task,
    list_tasks,
    load_task,
    prompts_of,
    task_from_records,
)

__all__ = [
    "ROLES",
    "SPLITS",
    "TASKS",
    "Dialogue",
    "Message",
    "PreferencePair",
    "Prompt",
    "RatedResponse",
    "Record",
    "TaskData",
    "TaskInfo",
    "get_task",
    "list_tasks",
    "load_task",
    "prompts_of",
    "task_from_records",
]
