"""Emulated secure elements: a GlobalPlatform card runtime with its applets, in SIM, microSD and
eSE form. Real stacks (pcscd+vpcd, nfcpy) reach these cards through the drivers; tests may also
call :meth:`SecureElement.transmit` directly (the in-process transport)."""
