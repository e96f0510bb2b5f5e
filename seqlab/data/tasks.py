"""Kept for old imports: tasks live in :mod:`seqlab.tasks` (this module only re-exports its interface)."""

from seqlab.tasks.base import TASKS, TaskData, TaskFn, load_task, register_task, stable_hash, subsample, task_options

__all__ = ["TASKS", "TaskData", "TaskFn", "load_task", "register_task", "stable_hash", "subsample", "task_options"]
