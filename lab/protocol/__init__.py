"""paylab's pure protocol core: bytes in, bytes out, no I/O, no clocks, no globals.

Every module cites the spec clause it implements and carries its vectors in ``lab/tests``.
"""
