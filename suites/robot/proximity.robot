*** Settings ***
Documentation     Proximity payments over the rig: qPBOC taps online and offline per account kind, declines,
...               a card removed mid-tap, a sale on the POS over its ECR link, contact two-pass and e-cash load.
...               Domain brief 1 ("qPBOC contactless fast path", "Contact flow", "E-cash load") and 5 (ISO 8583).
...               Every test enrols a fresh card (a PAN nobody tapped before: the issuer refuses a replayed ATC).
Library           paylab.fixtures.robot.PaylabLibrary
Suite Setup       Open Rig
Suite Teardown    Close Rig
Test Teardown     Ledger Should Balance


*** Test Cases ***
Online Approve Debit On The PC/SC Reader
    [Tags]    REQ-CL-ONLINE-01    REQ-ACCT-DEBIT-01    REQ-DRV-PCSC-01    needs:pcsc-contactless    needs:backend
    ...    needs:se-ese
    ${card}=    Enrol Card    debit    ese    balance=1000.00    ecash=0
    ${tap}=    Tap Card On Reader    ${card}    12.34    pcsc
    Response Code Should Be    00    ${tap}
    Balance Should Have Changed By    ${card}    -12.34

Online Approve Credit On The NFC Reader
    [Tags]    REQ-CL-ONLINE-01    REQ-ACCT-CREDIT-01    REQ-DRV-NFC-01    needs:nfc-reader    needs:nfc-emulator
    ...    needs:backend    needs:se-ese
    ${card}=    Enrol Card    credit    ese    balance=0    ecash=0    credit_limit=5000.00
    ${tap}=    Tap Card On Reader    ${card}    45.60    nfc
    Response Code Should Be    00    ${tap}
    Balance Should Have Changed By    ${card}    -45.60

Online Approve Debit On The POS
    [Tags]    REQ-CL-ONLINE-01    REQ-ACCT-DEBIT-01    REQ-DRV-ECR-01    needs:pos    needs:nfc-emulator
    ...    needs:backend    needs:se-ese
    ${card}=    Enrol Card    debit    ese    balance=1000.00    ecash=0
    ${tap}=    Tap Card On POS    ${card}    23.45
    Response Code Should Be    00    ${tap}
    Balance Should Have Changed By    ${card}    -23.45

Online Decline Insufficient Funds Debit
    [Tags]    REQ-CL-ONLINE-02    REQ-ACCT-DEBIT-01    needs:pcsc-contactless    needs:backend    needs:se-ese
    [Template]    Online Tap Should Decline
    51    debit     pcsc    50.00    balance=10.00

Online Decline Insufficient Funds Credit
    [Tags]    REQ-CL-ONLINE-02    REQ-ACCT-CREDIT-01    needs:nfc-reader    needs:nfc-emulator    needs:backend
    ...    needs:se-ese
    [Template]    Online Tap Should Decline
    51    credit    nfc     50.00    balance=0    credit_limit=20.00

Online Decline Insufficient Funds Debit On The NFC Reader
    [Tags]    REQ-CL-ONLINE-02    REQ-ACCT-DEBIT-01    needs:nfc-reader    needs:nfc-emulator    needs:backend
    ...    needs:se-ese
    [Template]    Online Tap Should Decline
    51    debit     nfc     99.99    balance=0

Online Decline Over Daily Limit Credit
    [Tags]    REQ-CL-ONLINE-03    REQ-ACCT-CREDIT-01    needs:pcsc-contactless    needs:backend    needs:se-ese
    [Template]    Online Tap Should Decline
    61    credit    pcsc    30.00    balance=0    credit_limit=5000.00    daily_limit=20.00

Online Decline Over Daily Limit Debit
    [Tags]    REQ-CL-ONLINE-03    REQ-ACCT-DEBIT-01    needs:pcsc-contactless    needs:backend    needs:se-ese
    [Template]    Online Tap Should Decline
    61    debit     pcsc    30.00    balance=1000.00    daily_limit=20.00

Online Decline Over Daily Limit On The NFC Reader
    [Tags]    REQ-CL-ONLINE-03    REQ-ACCT-DEBIT-01    needs:nfc-reader    needs:nfc-emulator    needs:backend
    ...    needs:se-ese
    [Template]    Online Tap Should Decline
    61    debit     nfc     10.01    balance=1000.00    daily_limit=10.00

Online Decline Bad Cryptogram Debit
    [Tags]    REQ-CL-ONLINE-04    REQ-ACCT-DEBIT-01    needs:pcsc-contactless    needs:backend    needs:se-ese
    [Template]    Tampered Cryptogram Should Decline
    debit     pcsc

Online Decline Bad Cryptogram Credit
    [Tags]    REQ-CL-ONLINE-04    REQ-ACCT-CREDIT-01    needs:pcsc-contactless    needs:backend    needs:se-ese
    [Template]    Tampered Cryptogram Should Decline
    credit    pcsc

Online Decline Bad Cryptogram On The NFC Reader
    [Tags]    REQ-CL-ONLINE-04    REQ-ACCT-DEBIT-01    needs:nfc-reader    needs:nfc-emulator    needs:backend
    ...    needs:se-ese
    [Template]    Tampered Cryptogram Should Decline
    debit     nfc

Offline E-Cash Approve
    [Tags]    REQ-CL-OFFLINE-01    REQ-ACCT-ECASH-01    needs:pcsc-contactless    needs:backend    needs:se-ese
    ${card}=    Enrol Card    ecash    ese    ecash=50.00
    ${tap}=    Tap Card On Reader    ${card}    8.80    pcsc
    Should Be Equal    ${tap.outcome}    APPROVED
    Should Be Equal    ${tap.response_code}    ${None}
    Should Be True    ${tap.detail.oda_ok}
    E-Cash Balance On Card Should Be    ${card}    41.20

E-Cash Short Goes Online
    [Tags]    REQ-CL-OFFLINE-02    REQ-ACCT-DEBIT-01    needs:pcsc-contactless    needs:backend    needs:se-ese
    ${card}=    Enrol Card    debit    ese    balance=1000.00    ecash=1.00
    ${tap}=    Tap Card On Reader    ${card}    5.00    pcsc
    Should Be True    ${tap.detail.online}
    Response Code Should Be    00    ${tap}
    Balance Should Have Changed By    ${card}    -5.00

Card Removed Mid-Tap Is Not Charged
    [Tags]    REQ-CL-REMOVAL-01    needs:nfc-reader    needs:nfc-emulator    needs:backend    needs:se-ese
    ${card}=    Enrol Card    debit    ese    balance=1000.00    ecash=0
    Remove Card During Tap    ${card}    12.34    nfc
    Balance Should Have Changed By    ${card}    0

Card Removed Before Second GENERATE AC Is Reversed
    [Tags]    REQ-CL-REMOVAL-01    needs:pcsc-contact    needs:backend    needs:se-sim
    ${card}=    Enrol Card    debit    sim    balance=1000.00
    ${removal}=    Remove Card During Tap    ${card}    12.34    contact
    Should Be Equal    ${removal.authorised}    00
    Should Be Equal    ${removal.reversal_code}    00
    Balance Should Have Changed By    ${card}    0

Contact Two Pass Debit On A SIM
    [Tags]    REQ-CT-TWOPASS-01    REQ-ACCT-DEBIT-01    needs:pcsc-contact    needs:backend    needs:se-sim
    [Template]    Contact Two Pass Should Approve
    debit     sim        33.00

Contact Two Pass Credit On A MicroSD
    [Tags]    REQ-CT-TWOPASS-01    REQ-ACCT-CREDIT-01    needs:pcsc-contact    needs:backend    needs:se-microsd
    [Template]    Contact Two Pass Should Approve
    credit    microsd    44.00

Contact Two Pass Debit On An eSE
    [Tags]    REQ-CT-TWOPASS-01    REQ-ACCT-DEBIT-01    needs:pcsc-contact    needs:backend    needs:se-ese
    [Template]    Contact Two Pass Should Approve
    debit     ese        55.00

E-Cash Load With Issuer Script
    [Tags]    REQ-ECASH-LOAD-01    REQ-CT-TWOPASS-01    REQ-CT-SCRIPT-01    needs:pcsc-contact    needs:backend    needs:se-sim
    ${card}=    Enrol Card    debit    sim    balance=1000.00    ecash=10.00
    ${load}=    Load E-Cash    ${card}    20.00
    Should Be Equal As Integers    ${load.card_after}    3000
    Should Be True    ${load.scripts} >= 1
    Should Be True    ${load.contact.issuer_authentication}
    Should Start With    ${load.script_results}    2
    Balance Should Have Changed By    ${card}    -20.00

Offline E-Cash Approve On The POS
    [Tags]    REQ-CL-OFFLINE-01    REQ-ACCT-ECASH-01    REQ-DRV-ECR-01    needs:pos    needs:nfc-emulator
    ...    needs:backend    needs:se-ese
    ${card}=    Enrol Card    debit    ese    balance=1000.00    ecash=50.00
    ${tap}=    Tap Card On POS    ${card}    8.80
    Response Code Should Be    00    ${tap}
    Should Be True    ${tap.detail.offline}
    Balance Should Have Changed By    ${card}    0

POS Reports Its Identity
    [Tags]    REQ-DRV-ECR-01    needs:pos
    ${identity}=    POS Identity Should Report Model
    Should Not Be Empty    ${identity}[serial]
    Should Not Be Empty    ${identity}[firmware]


*** Keywords ***
Contact Two Pass Should Approve
    [Arguments]    ${kind}    ${placement}    ${amount}
    ${card}=    Enrol Card    ${kind}    ${placement}    balance=1000.00    credit_limit=1000.00
    ${paid}=    Pay With Contact Two Pass    ${card}    ${amount}
    Response Code Should Be    00    ${paid}
    Should Be True    ${paid.approved}
    Should Be True    ${paid.arpc}
    Should Be True    ${paid.issuer_authentication}
    Balance Should Have Changed By    ${card}    -${amount}

Online Tap Should Decline
    [Arguments]    ${code}    ${kind}    ${reader}    ${amount}    &{enrolment}
    ${card}=    Enrol Card    ${kind}    ese    ecash=0    &{enrolment}
    ${tap}=    Tap Card On Reader    ${card}    ${amount}    ${reader}    online=yes
    Response Code Should Be    ${code}    ${tap}
    Balance Should Have Changed By    ${card}    0

Tampered Cryptogram Should Decline
    [Arguments]    ${kind}    ${reader}
    ${card}=    Enrol Card    ${kind}    ese    balance=1000.00    ecash=0    credit_limit=1000.00
    ${tap}=    Tap Card On Reader    ${card}    12.00    ${reader}    online=yes    tamper=arqc
    Should Not Be Equal    ${tap.response_code}    ${None}    the tampered tap did not go online
    Should Not Be Equal    ${tap.response_code}    00    a tampered cryptogram was approved
    Balance Should Have Changed By    ${card}    0
