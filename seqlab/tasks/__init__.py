"""Tasks beyond seqlab.data's built-ins, registered with :func:`seqlab.data.tasks.register_task` on import:
"summarization" (Gigaword-format files), "aeslc" (email subject lines) and "captioning" (image features)."""

from seqlab.tasks import captioning, hf, summarization  # noqa: F401  (registration)

__all__ = ["captioning", "hf", "summarization"]
