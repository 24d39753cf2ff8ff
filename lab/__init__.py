"""paylab orchestrator: protocol core, reference backend, rig inventory, campaigns, CLI."""
