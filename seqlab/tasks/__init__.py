"""Tasks: corpora + tokenizers + metrics by name (:data:`TASKS`), each with its options dataclass.

:mod:`seqlab.tasks.base` holds the interface (:class:`TaskData`, :func:`register_task`, :func:`load_task` and the
helpers); the tasks themselves live in :mod:`~seqlab.tasks.builtin` (g2p-cmudict, multi30k, parallel,
sigmorphon-g2p), :mod:`~seqlab.tasks.summarization` (summarization, aeslc) and :mod:`~seqlab.tasks.captioning`,
imported on the registry's first lookup (:mod:`seqlab.registry`), so importing this package registers nothing
by itself."""

from seqlab.tasks.base import TASKS, TaskData, TaskFn, load_task, register_task, stable_hash, subsample, task_options

__all__ = ["TASKS", "TaskData", "TaskFn", "load_task", "register_task", "stable_hash", "subsample", "task_options"]
