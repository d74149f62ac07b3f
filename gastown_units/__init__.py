"""gastown-units: Gas Town's supervision layer as small services that systemd runs."""

__version__ = "0.1.0"
