"""The Loki-compatible side of the service: LogQL, the /loki/api/v1 routes, push and forwarding."""
