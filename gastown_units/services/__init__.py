"""The services: each one job, a class with ``setup``/``tick`` over injected ports."""
