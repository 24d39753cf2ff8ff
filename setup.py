"""Map the repository's top-level folders onto the single import name ``paylab``.

``lab/`` -> ``paylab.lab``, ``drivers/`` -> ``paylab.drivers``, ``fixtures/`` -> ``paylab.fixtures``.
The PyPI names ``lab``, ``drivers``, ``fixtures`` and ``reports`` belong to unrelated projects, so
paylab installs none of them as a top-level module. Tests (``*/tests``) are not installed.
"""

from setuptools import find_packages, setup

ROOTS = ("lab", "drivers", "fixtures")
found = find_packages(include=[f"{r}" for r in ROOTS] + [f"{r}.*" for r in ROOTS],
                      exclude=["*.tests", "*.tests.*"])
setup(
    packages=[f"paylab.{name}" for name in found],
    package_dir={f"paylab.{root}": root for root in ROOTS},
)
