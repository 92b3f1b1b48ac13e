"""Entry points meant for ``ray job submit`` (``python -m orloj_ray.jobs.apply ...``).

They talk to the orloj-ray REST API only, so they run wherever the job's driver runs and
import no Ray.
"""
