"""Monitoring: Prometheus metrics of workers and `serve`, and whether the database answers."""
