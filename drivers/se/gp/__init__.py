"""GlobalPlatform card manager: security domains (ISD/SSD), content management, PPSE/CRS."""
