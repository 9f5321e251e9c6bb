"""Package layout (the rest of the metadata is in pyproject.toml).

The repository's top-level experiments/ folder installs as ``toylab.experiments``: a wheel holds
no top-level package but ``toylab``, so a user's own ``experiments`` package never meets ours."""

from setuptools import find_packages, setup

EXPERIMENTS = ["toylab.experiments"] + [f"toylab.experiments.{name}" for name in find_packages("experiments")]

setup(packages=find_packages(include=["toylab", "toylab.*"]) + EXPERIMENTS,
      package_dir={"toylab.experiments": "experiments"})
