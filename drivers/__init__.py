"""paylab drivers: protocols (abstract interfaces), real-stack implementations, emulated devices."""
