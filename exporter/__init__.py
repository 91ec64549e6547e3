"""Live Shopper Metrics: live shopper activity for Prometheus, Grafana and the browser."""

__version__ = "0.1.0"

__all__ = ["__version__"]
