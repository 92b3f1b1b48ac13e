"""Observability of the core: a metrics registry and the task series fed by ``TaskRecorder``.

No Ray here: ``actors/metrics_export.py`` mirrors the registry into ``ray.util.metrics`` and
``serve`` renders merged snapshots on ``/metrics``.
"""

from orloj_ray.observability.metrics import Registry, merge, render
from orloj_ray.observability.task_metrics import TaskMetrics, default_task_metrics

__all__ = ["Registry", "TaskMetrics", "default_task_metrics", "merge", "render"]
