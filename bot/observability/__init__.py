"""What the people who run the bot watch: Prometheus metrics and a health check (METRICS_PORT).

``metrics.JobMetrics`` is a job observer (``GenerationService.add_observer``): every counter and
histogram of jobs moves from the events it is told, never from calls spread through the code, and
what the workers report (their heartbeats, their results) reaches it through the bot. ``health``
says whether the bot can serve: the gateway connected, SQLite answering, a worker ready or starting.
``server`` serves both over HTTP, bound to METRICS_HOST (127.0.0.1 unless set).
"""
