"""The Hydra configs, installed as the package speechcls.conf (see pyproject.toml)."""
