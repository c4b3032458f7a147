"""gitopsctl: a homelab git repository that deploys itself and heals itself."""

__version__ = "0.1.0"
