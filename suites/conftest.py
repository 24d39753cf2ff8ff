"""The lab's suites run with paylab's pytest plugin: ``--rig``, ``--inventory``, requirement markers."""

pytest_plugins = ["paylab.fixtures.pytest_plugin"]
