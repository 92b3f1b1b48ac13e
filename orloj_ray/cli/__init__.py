"""The ``orloj`` command line (entry point ``orloj_ray.cli.main:main``)."""
