*** Settings ***
Documentation     OTA security (domain brief 4 "SCP80 command packet", "Delivery and SCP81"): a replayed or
...               tampered secured packet is refused and not executed, over SMS-PP (SCP80) and HTTP remote
...               administration (SCP03). Lost phone (issue 4 item 4; brief 3 "Life cycles"): the TSM locks the
...               payment application, taps are declined; once found and unlocked, the phone pays again.
Library           paylab.fixtures.robot.PaylabLibrary
Suite Setup       Open Rig
Suite Teardown    Close Rig


*** Test Cases ***
Replayed SMS-PP Packet Is Rejected
    [Tags]    REQ-OTA-SEC-01    REQ-OTA-SMSPP-01    needs:se-sim    needs:backend
    ${attack}=    OTA Replay Should Be Rejected
    Should Be True    ${attack.genuine.ok}

SMS-PP Packet With Wrong MAC Is Rejected
    [Tags]    REQ-OTA-SEC-02    REQ-OTA-SMSPP-01    needs:se-sim    needs:backend
    OTA Wrong MAC Should Be Rejected    sms-pp

HTTP Admin Script With Wrong MAC Is Rejected
    [Tags]    REQ-OTA-SEC-02    REQ-OTA-HTTP-01    needs:se-ese    needs:backend
    OTA Wrong MAC Should Be Rejected    http-admin    ese

Lost Phone Is Locked And Taps Are Declined
    [Tags]    REQ-LOST-01    needs:se-ese    needs:backend    needs:nfc-reader    needs:nfc-emulator
    ${issued}=    Issue Card Over The Air    direct    ese
    Issuance Should Have Completed    ${issued}
    ${lost}=    Lock Lost Phone    ${issued}    1.00
    Should Be True    ${lost.declined}
    Should Be Equal    ${lost.card_life_cycle}    8F
    Should Not Be True    ${lost.ppse_lists_app}
    Ledger Should Balance

Lost Phone Via The UnionPay TSM Is Locked
    [Tags]    REQ-LOST-01    REQ-COOP-UNIONPAY-01    needs:se-sim    needs:backend    needs:nfc-reader
    ...    needs:nfc-emulator
    ${issued}=    Issue Card Over The Air    unionpay    sim
    ${lost}=    Lock Lost Phone    ${issued}    1.00
    Should Be True    ${lost.declined}
    Ledger Should Balance

Found Phone Is Unlocked And Pays Again
    [Tags]    REQ-LOST-01    needs:se-microsd    needs:backend    needs:nfc-reader    needs:nfc-emulator
    ${issued}=    Issue Card Over The Air    mtps    microsd
    ${lost}=    Lock Lost Phone    ${issued}
    Should Be True    ${lost.declined}
    ${tap}=    Unlock Found Phone    ${issued}    2.00
    Should Be Equal    ${tap.response_code}    00
    Ledger Should Balance
