"""Payment applets of the emulated secure element (one module per card scheme)."""
