"""Cryptography of the protocol core, all over ``cryptography`` (and an SM2 adapter)."""
