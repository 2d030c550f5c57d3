"""haredis: a Sentinel-compatible failover daemon for Redis."""

__version__ = "0.1.0"
