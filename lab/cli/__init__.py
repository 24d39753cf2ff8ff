"""The ``paylab`` command line: a payment test engineer's calculator and the lab's entry point."""
