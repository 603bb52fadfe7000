"""The Hydra configs, installed as the package speechcls.conf (pyproject.toml maps it onto this folder).

A regular package, not a namespace one: setuptools' editable install finds a mapped subpackage only by
its __init__.py, and importlib.resources then gives this folder's path.
"""
