"""EMV / PBOC data dictionary, keyed by kernel (RID).

Tag meanings are kernel-scoped (domain brief section 1 "Tag collisions", section 8 pitfall 4): 9F5D
is the *available offline spending amount* under UnionPay/PBOC (RID A000000333) and Visa, but the
*application capabilities information* under Mastercard; 9F6D and 9F74-9F79 are e-cash/VLP data
elements under PBOC and Visa, but mag-stripe/data-envelope elements under Mastercard.

:func:`lookup` resolves a tag first in the kernel's own table, then in the generic EMV table
(EMV Book 3 Annex A, plus the few contactless-common elements). Kernel-specific tags are absent
from the generic table on purpose: without a kernel, their meaning is unknown.

Formats follow EMV Book 3 4.3: ``n`` (BCD, right-justified, left-padded 0), ``cn`` (BCD,
left-justified, right-padded F), ``an``, ``ans`` and ``b``. Lengths are in bytes.
Facts not checked against the primary specification carry ``[M]`` in ``source``, like the brief.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from .errors import ProtocolError

Format = Literal["n", "cn", "an", "ans", "b"]
FORMATS: frozenset[str] = frozenset({"n", "cn", "an", "ans", "b"})

KERNEL_PBOC = "A000000333"
"""UnionPay / PBOC 3.0 (JR/T 0025) RID."""
KERNEL_VISA = "A000000003"
KERNEL_MASTERCARD = "A000000004"


class Sensitivity(Enum):
    """How a value must be masked before it reaches a log, trace or report (PCI DSS 3.3/3.4)."""

    NONE = "none"
    PAN = "pan"  # BCD digits, shown as first 6 / last 4
    TRACK2 = "track2"  # PAN part masked, everything after the D separator hidden
    TRACK1 = "track1"  # ASCII "B<PAN>^<NAME>^<YYMM><SC><DD>": PAN masked, rest hidden
    SECRET = "secret"  # names, PIN data, keys, discretionary data: never shown


@dataclass(frozen=True)
class TagInfo:
    """One data element of the dictionary.

    ``min_len``/``max_len`` are byte lengths of the value; ``source`` cites the spec clause (with
    ``[M]`` when from memory); ``templates`` lists where the element is usually found;
    ``kernel`` is the RID of the table the entry belongs to (``None`` = generic EMV).
    """

    tag: int
    name: str
    format: Format
    min_len: int
    max_len: int
    source: str
    sensitivity: Sensitivity = Sensitivity.NONE
    templates: tuple[int, ...] = ()
    kernel: str | None = None

    @property
    def sensitive(self) -> bool:
        """True when the value must be masked in logs and traces."""
        return self.sensitivity is not Sensitivity.NONE

    @property
    def constructed(self) -> bool:
        """Bit 6 of the first tag byte (ISO/IEC 7816-4 5.2): the value is a template."""
        first = self.tag
        while first > 0xFF:
            first >>= 8
        return bool(first & 0x20)


_BOOK3 = "EMV Book 3 Annex A"
_BOOK4 = "EMV Book 4 Annex A"
_PAN = Sensitivity.PAN
_T2 = Sensitivity.TRACK2
_T1 = Sensitivity.TRACK1
_SECRET = Sensitivity.SECRET


def _t(
    tag: int,
    name: str,
    fmt: Format,
    min_len: int,
    max_len: int,
    source: str = _BOOK3,
    sensitivity: Sensitivity = Sensitivity.NONE,
    templates: tuple[int, ...] = (),
) -> TagInfo:
    return TagInfo(tag, name, fmt, min_len, max_len, source, sensitivity, templates)


# ---------------------------------------------------------------------------------------------
# Generic EMV dictionary (EMV Book 3 Annex A, Book 4 for terminal data).
# ---------------------------------------------------------------------------------------------
_GENERIC: tuple[TagInfo, ...] = (
    _t(0x42, "Issuer Identification Number (IIN)", "n", 3, 3),
    _t(0x4F, "Application Identifier (ADF Name)", "b", 5, 16, templates=(0x61,)),
    _t(0x50, "Application Label", "ans", 1, 16, templates=(0x61, 0xA5)),
    _t(0x56, "Track 1 Data", "ans", 1, 76, "EMV Contactless Book C-2 [M]", _T1, (0x70,)),
    _t(0x57, "Track 2 Equivalent Data", "b", 1, 19, _BOOK3, _T2, (0x70, 0x77)),
    _t(0x5A, "Application Primary Account Number (PAN)", "cn", 1, 10, _BOOK3, _PAN, (0x70,)),
    _t(0x5F20, "Cardholder Name", "ans", 2, 26, _BOOK3, _SECRET, (0x70,)),
    _t(0x5F24, "Application Expiration Date", "n", 3, 3, templates=(0x70,)),
    _t(0x5F25, "Application Effective Date", "n", 3, 3, templates=(0x70,)),
    _t(0x5F28, "Issuer Country Code", "n", 2, 2, templates=(0x70,)),
    _t(0x5F2A, "Transaction Currency Code", "n", 2, 2, _BOOK4),
    _t(0x5F2D, "Language Preference", "an", 2, 8, templates=(0xA5,)),
    _t(0x5F30, "Service Code", "n", 2, 2, templates=(0x70,)),
    _t(0x5F34, "Application PAN Sequence Number", "n", 1, 1, templates=(0x70, 0x77)),
    _t(0x5F36, "Transaction Currency Exponent", "n", 1, 1, _BOOK4),
    _t(0x5F50, "Issuer URL", "ans", 1, 252, templates=(0xBF0C,)),
    _t(0x61, "Application Template", "b", 1, 252, templates=(0x70, 0xBF0C)),
    _t(0x6F, "File Control Information (FCI) Template", "b", 1, 252),
    _t(0x70, "READ RECORD Response Message Template", "b", 1, 252),
    _t(0x71, "Issuer Script Template 1", "b", 1, 252),
    _t(0x72, "Issuer Script Template 2", "b", 1, 252),
    _t(0x73, "Directory Discretionary Template", "b", 1, 252, templates=(0x61,)),
    _t(0x77, "Response Message Template Format 2", "b", 1, 252),
    _t(0x80, "Response Message Template Format 1", "b", 1, 252),
    _t(0x81, "Amount, Authorised (Binary)", "b", 4, 4, _BOOK4),
    _t(0x82, "Application Interchange Profile", "b", 2, 2, templates=(0x77,)),
    _t(0x83, "Command Template", "b", 0, 252, "EMV Book 3 6.5.8"),
    _t(0x84, "Dedicated File (DF) Name", "b", 5, 16, templates=(0x6F,)),
    _t(0x86, "Issuer Script Command", "b", 5, 261, templates=(0x71, 0x72)),
    _t(0x87, "Application Priority Indicator", "b", 1, 1, templates=(0x61, 0xA5)),
    _t(0x88, "Short File Identifier (SFI)", "b", 1, 1, templates=(0xA5,)),
    _t(0x89, "Authorisation Code", "ans", 6, 6, _BOOK4 + " [M: an/ans]"),
    _t(0x8A, "Authorisation Response Code", "an", 2, 2, _BOOK4),
    _t(0x8C, "Card Risk Management Data Object List 1 (CDOL1)", "b", 1, 252, templates=(0x70,)),
    _t(0x8D, "Card Risk Management Data Object List 2 (CDOL2)", "b", 1, 252, templates=(0x70,)),
    _t(0x8E, "Cardholder Verification Method (CVM) List", "b", 10, 252, templates=(0x70,)),
    _t(0x8F, "Certification Authority Public Key Index", "b", 1, 1, templates=(0x70,)),
    _t(0x90, "Issuer Public Key Certificate", "b", 1, 248, templates=(0x70,)),
    _t(0x91, "Issuer Authentication Data", "b", 8, 16),
    _t(0x92, "Issuer Public Key Remainder", "b", 1, 248, templates=(0x70,)),
    _t(0x93, "Signed Static Application Data", "b", 1, 248, templates=(0x70,)),
    _t(0x94, "Application File Locator (AFL)", "b", 4, 252, templates=(0x77,)),
    _t(0x95, "Terminal Verification Results", "b", 5, 5, _BOOK4),
    _t(0x97, "Transaction Certificate Data Object List (TDOL)", "b", 1, 252, templates=(0x70,)),
    _t(0x98, "Transaction Certificate (TC) Hash Value", "b", 20, 20, _BOOK4),
    _t(0x99, "Transaction Personal Identification Number (PIN) Data", "b", 1, 252, _BOOK4, _SECRET),
    _t(0x9A, "Transaction Date", "n", 3, 3, _BOOK4),
    _t(0x9B, "Transaction Status Information", "b", 2, 2, _BOOK4),
    _t(0x9C, "Transaction Type", "n", 1, 1, _BOOK4),
    _t(0x9D, "Directory Definition File (DDF) Name", "b", 5, 16, templates=(0x61,)),
    _t(0x9F01, "Acquirer Identifier", "n", 6, 6, _BOOK4),
    _t(0x9F02, "Amount, Authorised (Numeric)", "n", 6, 6, _BOOK4),
    _t(0x9F03, "Amount, Other (Numeric)", "n", 6, 6, _BOOK4),
    _t(0x9F04, "Amount, Other (Binary)", "b", 4, 4, _BOOK4),
    _t(0x9F05, "Application Discretionary Data", "b", 1, 32, templates=(0x70,)),
    _t(0x9F06, "Application Identifier (AID) - terminal", "b", 5, 16, _BOOK4),
    _t(0x9F07, "Application Usage Control", "b", 2, 2, templates=(0x70,)),
    _t(0x9F08, "Application Version Number", "b", 2, 2, templates=(0x70,)),
    _t(0x9F09, "Application Version Number - terminal", "b", 2, 2, _BOOK4),
    _t(0x9F0B, "Cardholder Name Extended", "ans", 27, 45, _BOOK3, _SECRET, (0x70,)),
    _t(0x9F0D, "Issuer Action Code - Default", "b", 5, 5, templates=(0x70,)),
    _t(0x9F0E, "Issuer Action Code - Denial", "b", 5, 5, templates=(0x70,)),
    _t(0x9F0F, "Issuer Action Code - Online", "b", 5, 5, templates=(0x70,)),
    _t(0x9F10, "Issuer Application Data", "b", 1, 32, templates=(0x77,)),
    _t(0x9F11, "Issuer Code Table Index", "n", 1, 1, templates=(0xA5,)),
    _t(0x9F12, "Application Preferred Name", "ans", 1, 16, templates=(0xA5,)),
    _t(0x9F13, "Last Online ATC Register", "b", 2, 2),
    _t(0x9F14, "Lower Consecutive Offline Limit", "b", 1, 1, templates=(0x70,)),
    _t(0x9F15, "Merchant Category Code", "n", 2, 2, _BOOK4),
    _t(0x9F16, "Merchant Identifier", "ans", 15, 15, _BOOK4),
    _t(0x9F17, "PIN Try Counter", "b", 1, 1),
    _t(0x9F18, "Issuer Script Identifier", "b", 4, 4, templates=(0x71, 0x72)),
    _t(0x9F1A, "Terminal Country Code", "n", 2, 2, _BOOK4),
    _t(0x9F1B, "Terminal Floor Limit", "b", 4, 4, _BOOK4),
    _t(0x9F1C, "Terminal Identification", "an", 8, 8, _BOOK4),
    _t(0x9F1D, "Terminal Risk Management Data", "b", 1, 8, _BOOK4),
    _t(0x9F1E, "Interface Device (IFD) Serial Number", "an", 8, 8, _BOOK4),
    _t(0x9F1F, "Track 1 Discretionary Data", "ans", 1, 54, _BOOK3, _SECRET, (0x70,)),
    _t(0x9F20, "Track 2 Discretionary Data", "cn", 1, 16, _BOOK3, _SECRET, (0x70,)),
    _t(0x9F21, "Transaction Time", "n", 3, 3, _BOOK4),
    _t(0x9F22, "Certification Authority Public Key Index - terminal", "b", 1, 1, _BOOK4),
    _t(0x9F23, "Upper Consecutive Offline Limit", "b", 1, 1, templates=(0x70,)),
    _t(0x9F26, "Application Cryptogram", "b", 8, 8, templates=(0x77,)),
    _t(0x9F27, "Cryptogram Information Data", "b", 1, 1, templates=(0x77,)),
    _t(0x9F2D, "ICC PIN Encipherment Public Key Certificate", "b", 1, 248, templates=(0x70,)),
    _t(0x9F2E, "ICC PIN Encipherment Public Key Exponent", "b", 1, 3, templates=(0x70,)),
    _t(0x9F2F, "ICC PIN Encipherment Public Key Remainder", "b", 1, 248, templates=(0x70,)),
    _t(0x9F32, "Issuer Public Key Exponent", "b", 1, 3, templates=(0x70,)),
    _t(0x9F33, "Terminal Capabilities", "b", 3, 3, _BOOK4),
    _t(0x9F34, "Cardholder Verification Method (CVM) Results", "b", 3, 3, _BOOK4),
    _t(0x9F35, "Terminal Type", "n", 1, 1, _BOOK4),
    _t(0x9F36, "Application Transaction Counter (ATC)", "b", 2, 2, templates=(0x77,)),
    _t(0x9F37, "Unpredictable Number", "b", 4, 4, _BOOK4),
    _t(0x9F38, "Processing Options Data Object List (PDOL)", "b", 1, 252, templates=(0xA5,)),
    _t(0x9F39, "Point-of-Service (POS) Entry Mode", "n", 1, 1, _BOOK4),
    _t(0x9F3A, "Amount, Reference Currency", "b", 4, 4, _BOOK4),
    _t(0x9F3B, "Application Reference Currency", "n", 2, 8, templates=(0x70,)),
    _t(0x9F3C, "Transaction Reference Currency Code", "n", 2, 2, _BOOK4),
    _t(0x9F3D, "Transaction Reference Currency Exponent", "n", 1, 1, _BOOK4),
    _t(0x9F40, "Additional Terminal Capabilities", "b", 5, 5, _BOOK4),
    _t(0x9F41, "Transaction Sequence Counter", "n", 2, 4, _BOOK4),
    _t(0x9F42, "Application Currency Code", "n", 2, 2, templates=(0x70,)),
    _t(0x9F43, "Application Reference Currency Exponent", "n", 1, 4, templates=(0x70,)),
    _t(0x9F44, "Application Currency Exponent", "n", 1, 1, templates=(0x70,)),
    _t(0x9F45, "Data Authentication Code", "b", 2, 2),
    # SECRET: the SM2 form of the certificate (PBOC 3.0 Part 17 [M]) carries the PAN in clear ("14 || PAN cn10")
    _t(0x9F46, "ICC Public Key Certificate", "b", 1, 248, sensitivity=_SECRET, templates=(0x70,)),
    _t(0x9F47, "ICC Public Key Exponent", "b", 1, 3, templates=(0x70,)),
    _t(0x9F48, "ICC Public Key Remainder", "b", 1, 248, templates=(0x70,)),
    _t(0x9F49, "Dynamic Data Authentication Data Object List (DDOL)", "b", 1, 252, templates=(0x70,)),
    _t(0x9F4A, "Static Data Authentication Tag List", "b", 1, 252, templates=(0x70,)),
    _t(0x9F4B, "Signed Dynamic Application Data", "b", 1, 248, templates=(0x77,)),
    _t(0x9F4C, "ICC Dynamic Number", "b", 2, 8),
    _t(0x9F4D, "Log Entry", "b", 2, 2, templates=(0xBF0C,)),
    _t(0x9F4E, "Merchant Name and Location", "ans", 1, 252, _BOOK4),
    _t(0x9F4F, "Log Format", "b", 1, 252, "EMV Book 3 Annex D"),
    _t(0xA5, "FCI Proprietary Template", "b", 1, 252, templates=(0x6F,)),
    _t(0xBF0C, "FCI Issuer Discretionary Data", "b", 1, 222, templates=(0xA5,)),
)

# ---------------------------------------------------------------------------------------------
# Visa (VIS / VCPS qVSDC / VLP); PBOC inherits most of these (domain brief section 1).
# ---------------------------------------------------------------------------------------------
_VCPS = "Visa VCPS (EMV Contactless Book C-3)"
_VIS = "Visa VIS [S: javaemvreader VISATags.java]"
_VISA: tuple[TagInfo, ...] = (
    _t(0x9F51, "Application Currency Code", "n", 2, 2, "Visa VIS [M]"),
    _t(0x9F52, "Application Default Action (ADA)", "b", 2, 4, "Visa VIS [M]"),
    _t(0x9F53, "Consecutive Transaction Limit (International)", "b", 1, 1, _VIS),
    _t(0x9F54, "Cumulative Total Transaction Amount Limit", "n", 6, 6, _VIS),
    _t(0x9F56, "Issuer Authentication Indicator", "b", 1, 1, _VIS),
    _t(0x9F57, "Issuer Country Code", "n", 2, 2, "Visa VIS [M]"),
    _t(0x9F58, "Lower Consecutive Offline Limit", "b", 1, 1, _VIS),
    _t(0x9F59, "Upper Consecutive Offline Limit", "b", 1, 1, _VIS),
    _t(0x9F5C, "Cumulative Total Transaction Amount Upper Limit", "n", 6, 6, _VIS),
    _t(0x9F5D, "Available Offline Spending Amount (AOSA)", "n", 6, 6, _VCPS + " [M]", templates=(0x77,)),
    _t(0x9F66, "Terminal Transaction Qualifiers (TTQ)", "b", 4, 4, _VCPS),
    _t(0x9F69, "Card Authentication Related Data", "b", 5, 16, _VCPS, templates=(0x70,)),
    _t(0x9F6C, "Card Transaction Qualifiers (CTQ)", "b", 2, 2, _VCPS, templates=(0x77,)),
    _t(0x9F6D, "VLP Reset Threshold", "n", 6, 6, "Visa VLP [M]"),
    _t(0x9F6E, "Form Factor Indicator", "b", 4, 4, _VCPS + " [M]"),
    _t(0x9F72, "Consecutive Transaction Limit (International - Country)", "b", 1, 1, _VIS),
    _t(0x9F74, "VLP Issuer Authorisation Code", "ans", 6, 6, "Visa VLP [M]"),
    _t(0x9F75, "Cumulative Transaction Amount Limit - Dual Currency", "n", 6, 6, _VIS),
    _t(0x9F77, "VLP Funds Limit", "n", 6, 6, _VIS),
    _t(0x9F78, "VLP Single Transaction Limit", "n", 6, 6, _VIS),
    _t(0x9F79, "VLP Available Funds", "n", 6, 6, _VIS),
    _t(0x9F7A, "VLP Terminal Support Indicator", "b", 1, 1, "Visa VLP [M]"),
    _t(0x9F7B, "VLP Terminal Transaction Limit", "n", 6, 6, "Visa VLP [M]"),
    _t(0x9F7C, "Customer Exclusive Data", "b", 1, 32, _VCPS + " [M]"),
)

# ---------------------------------------------------------------------------------------------
# UnionPay / PBOC 3.0 (JR/T 0025; qPBOC Part 12, e-cash Part 13) - overrides under A000000333.
# ---------------------------------------------------------------------------------------------
_QPBOC = "JR/T 0025.12 (qPBOC)"
_ECASH = "JR/T 0025.13 (e-cash)"
_PBOC: tuple[TagInfo, ...] = (
    _t(0x9F13, "Last Online ATC Register", "b", 2, 2, _ECASH + " [S: brief 1, GET DATA]"),
    _t(0x9F4F, "Transaction Log Format", "b", 1, 252, "JR/T 0025 [S: brief 1, GET DATA 9F4F]"),
    _t(0x9F51, "Application Currency Code", "n", 2, 2, _ECASH + " [S: brief 1]"),
    _t(0x9F52, "Application Default Action (ADA)", "b", 2, 4, "JR/T 0025.5 [M]"),
    _t(0x9F53, "Consecutive Transaction Limit (International - Currency)", "b", 1, 1, "JR/T 0025.5 [M]"),
    _t(0x9F54, "Cumulative Total Transaction Amount Limit", "n", 6, 6, "JR/T 0025.5 [M]"),
    _t(0x9F56, "Issuer Authentication Indicator", "b", 1, 1, "JR/T 0025.5 [M]"),
    _t(0x9F57, "Issuer Country Code", "n", 2, 2, "JR/T 0025.5 [M]"),
    _t(0x9F58, "Lower Consecutive Offline Limit", "b", 1, 1, "JR/T 0025.5 [M]"),
    _t(0x9F59, "Upper Consecutive Offline Limit", "b", 1, 1, "JR/T 0025.5 [M]"),
    _t(0x9F5C, "Cumulative Total Transaction Amount Upper Limit", "n", 6, 6, "JR/T 0025.5 [M]"),
    _t(
        0x9F5D,
        "Available Offline Spending Amount (e-cash balance)",
        "n",
        6,
        6,
        _QPBOC + " [S: brief 1 trace, equals the IDD balance]",
        templates=(0x77,),
    ),
    _t(0x9F61, "Cardholder ID Number", "ans", 1, 40, "JR/T 0025.5 [M]", _SECRET, (0x70,)),
    _t(0x9F62, "Cardholder ID Type", "n", 1, 1, "JR/T 0025.5 [M]", templates=(0x70,)),
    _t(0x9F63, "Card Product Identification Information", "b", 16, 16, "JR/T 0025.5 [M]"),
    _t(0x9F66, "Terminal Transaction Qualifiers (TTQ)", "b", 4, 4, _QPBOC + " [S: brief 1]"),
    _t(0x9F69, "Card Authentication Related Data", "b", 5, 16, _QPBOC + " [S: brief 1, fDDA v01]"),
    _t(0x9F6C, "Card Transaction Qualifiers (CTQ)", "b", 2, 2, _QPBOC + " [S: brief 1]", templates=(0x77,)),
    _t(0x9F6D, "E-cash Reset Threshold", "n", 6, 6, _ECASH + " [M]"),
    _t(0x9F6E, "Form Factor Indicator", "b", 4, 4, _QPBOC + " [M]"),
    _t(0x9F72, "Consecutive Transaction Limit (International - Country)", "b", 1, 1, "JR/T 0025.5 [M]"),
    _t(0x9F73, "Currency Conversion Factor", "n", 4, 4, "JR/T 0025.5 [M]"),
    _t(0x9F74, "E-cash Issuer Authorisation Code", "ans", 6, 6, _ECASH + " [M: value ECC001]"),
    _t(0x9F75, "Cumulative Transaction Amount Limit - Dual Currency", "n", 6, 6, "JR/T 0025.5 [M]"),
    _t(0x9F76, "Second Application Currency Code", "n", 2, 2, "JR/T 0025.5 [M]"),
    _t(0x9F77, "E-cash Balance Limit", "n", 6, 6, _ECASH + " [S: brief 1]"),
    _t(0x9F78, "E-cash Single Transaction Limit", "n", 6, 6, _ECASH + " [S: brief 1]"),
    _t(0x9F79, "E-cash Balance", "n", 6, 6, _ECASH + " [S: qpboc-kernel QECashQuery.java]"),
    _t(0x9F7A, "E-cash Terminal Support Indicator", "b", 1, 1, _ECASH + " [M]"),
    _t(0x9F7B, "E-cash Terminal Transaction Limit", "n", 6, 6, _ECASH + " [M]"),
    _t(0xDF4D, "Load Log Entry", "b", 2, 2, _ECASH + " [S: brief 1 trace]", templates=(0xBF0C,)),
    _t(0xDF4F, "Load Log Format", "b", 1, 252, _ECASH + " [M]"),
    _t(0xDF60, "CAPP Transaction Indicator", "b", 1, 1, "JR/T 0025.14 [M]"),
    _t(0xDF61, "Segmented Charging Application Indicator", "b", 1, 1, "JR/T 0025.14 [M]"),
    _t(0xDF62, "E-cash Segmented Charging Offset Limit", "n", 6, 6, "JR/T 0025.14 [M]"),
    _t(0xDF63, "E-cash Segmented Charging Amount Offset", "n", 6, 6, "JR/T 0025.14 [M]"),
    _t(0xDF69, "SM Algorithm Support Indicator", "b", 1, 1, "JR/T 0025.17 [S: qpboc-kernel QAppInit.java]"),
)

# ---------------------------------------------------------------------------------------------
# Mastercard (M/Chip, PayPass / EMV Contactless Book C-2).
# ---------------------------------------------------------------------------------------------
_C2 = "EMV Contactless Book C-2 [S: proxmark3 emv_tags.c]"
_C2M = "EMV Contactless Book C-2 [M]"
_MASTERCARD: tuple[TagInfo, ...] = (
    _t(0x9F53, "Transaction Category Code", "an", 1, 1, "Mastercard M/Chip [M]"),
    _t(0x9F5D, "Application Capabilities Information", "b", 3, 3, _C2),
    _t(0x9F60, "CVC3 (Track1)", "b", 2, 2, _C2),
    _t(0x9F61, "CVC3 (Track2)", "b", 2, 2, _C2),
    _t(0x9F62, "PCVC3 (Track1)", "b", 6, 6, _C2),
    _t(0x9F63, "PUNATC (Track1)", "b", 6, 6, _C2),
    _t(0x9F64, "NATC (Track1)", "b", 1, 1, _C2),
    _t(0x9F65, "PCVC3 (Track2)", "b", 2, 2, _C2),
    _t(0x9F66, "PUNATC (Track2)", "b", 2, 2, _C2),
    _t(0x9F67, "NATC (Track2)", "b", 1, 1, _C2),
    _t(0x9F69, "UDOL", "b", 1, 252, _C2),
    _t(0x9F6A, "Unpredictable Number (Numeric)", "n", 4, 4, _C2),
    _t(0x9F6B, "Track 2 Data", "b", 1, 19, _C2, _T2, (0x70,)),
    _t(0x9F6C, "Mag-stripe Application Version Number (Card)", "b", 2, 2, _C2M),
    _t(0x9F6D, "Mag-stripe Application Version Number (Reader)", "b", 2, 2, _C2),
    _t(0x9F6E, "Third Party Data", "b", 5, 32, _C2M),
    _t(0x9F70, "Protected Data Envelope 1", "b", 1, 192, _C2),
    _t(0x9F71, "Protected Data Envelope 2", "b", 1, 192, _C2),
    _t(0x9F72, "Protected Data Envelope 3", "b", 1, 192, _C2),
    _t(0x9F73, "Protected Data Envelope 4", "b", 1, 192, _C2),
    _t(0x9F74, "Protected Data Envelope 5", "b", 1, 192, _C2),
    _t(0x9F75, "Unprotected Data Envelope 1", "b", 1, 192, _C2),
    _t(0x9F76, "Unprotected Data Envelope 2", "b", 1, 192, _C2),
    _t(0x9F77, "Unprotected Data Envelope 3", "b", 1, 192, _C2),
    _t(0x9F78, "Unprotected Data Envelope 4", "b", 1, 192, _C2),
    _t(0x9F79, "Unprotected Data Envelope 5", "b", 1, 192, _C2),
    _t(0x9F7C, "Merchant Custom Data", "b", 20, 20, _C2M),
)


def _index(entries: Iterable[TagInfo], kernel: str | None) -> dict[int, TagInfo]:
    table: dict[int, TagInfo] = {}
    for entry in entries:
        if entry.tag in table:
            raise AssertionError(f"duplicate dictionary entry {entry.tag:X} for kernel {kernel}")
        table[entry.tag] = TagInfo(
            entry.tag,
            entry.name,
            entry.format,
            entry.min_len,
            entry.max_len,
            entry.source,
            entry.sensitivity,
            entry.templates,
            kernel,
        )
    return table


_GENERIC_TABLE = _index(_GENERIC, None)
_KERNEL_TABLES: dict[str, dict[int, TagInfo]] = {
    KERNEL_PBOC: _index(_PBOC, KERNEL_PBOC),
    KERNEL_VISA: _index(_VISA, KERNEL_VISA),
    KERNEL_MASTERCARD: _index(_MASTERCARD, KERNEL_MASTERCARD),
}


def normalize_kernel(kernel: str | None) -> str | None:
    """Upper-case RID (first 10 hex digits) of ``kernel``; a full AID in hex is accepted too."""
    if kernel is None:
        return None
    return kernel.strip().upper()[:10]


def kernels() -> tuple[str, ...]:
    """RIDs that have their own table."""
    return tuple(_KERNEL_TABLES)


def lookup(tag: int, kernel: str | None = None) -> TagInfo | None:
    """Dictionary entry for ``tag`` as understood by ``kernel`` (a RID such as ``"A000000333"``).

    The kernel's own table wins over the generic EMV table (brief section 1, "Tag collisions");
    ``kernel=None`` or an unknown RID consults only the generic table.
    """
    rid = normalize_kernel(kernel)
    if rid is not None:
        entry = _KERNEL_TABLES.get(rid, {}).get(tag)
        if entry is not None:
            return entry
    return _GENERIC_TABLE.get(tag)


def entries(kernel: str | None = None) -> list[TagInfo]:
    """Every entry visible under ``kernel`` (its own table merged over the generic one), by tag."""
    merged = dict(_GENERIC_TABLE)
    rid = normalize_kernel(kernel)
    if rid is not None:
        merged.update(_KERNEL_TABLES.get(rid, {}))
    return [merged[t] for t in sorted(merged)]


def sensitivity(tag: int, kernel: str | None = None) -> Sensitivity:
    """How to mask ``tag``'s value.

    With a known kernel, that kernel's meaning decides. With ``None`` or an unknown RID the answer
    is conservative: the tag is sensitive if *any* table marks it so (e.g. 9F6B, Mastercard track 2,
    is masked even when the kernel of a trace is not known).
    """
    rid = normalize_kernel(kernel)
    if rid in _KERNEL_TABLES:
        entry = lookup(tag, rid)
        return entry.sensitivity if entry is not None else Sensitivity.NONE
    for table in (_GENERIC_TABLE, *_KERNEL_TABLES.values()):
        entry = table.get(tag)
        if entry is not None and entry.sensitive:
            return entry.sensitivity
    return Sensitivity.NONE


def is_known(tag: int, kernel: str | None = None) -> bool:
    """True when the dictionary defines ``tag`` (under ``kernel``; in any table if it is unknown)."""
    rid = normalize_kernel(kernel)
    if rid in _KERNEL_TABLES:
        return lookup(tag, rid) is not None
    return any(tag in table for table in (_GENERIC_TABLE, *_KERNEL_TABLES.values()))


def kernel_for_aid(aid: bytes) -> str:
    """Kernel key (RID, the first 5 bytes of the AID, ISO/IEC 7816-5) as upper-case hex."""
    if not 5 <= len(aid) <= 16:
        raise ProtocolError(
            f"AID of {len(aid)} bytes", expected="5 to 16 bytes (ISO/IEC 7816-5)", field="AID"
        )
    return aid[:5].hex().upper()
