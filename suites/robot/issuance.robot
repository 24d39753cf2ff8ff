*** Settings ***
Documentation     Air issuance of the PBOC payment applet onto every SE placement under every cooperation mode
...               (issue 6 "Suites"; domain brief 4 "TSM flow" steps 1-5): eligibility, SSD creation, key
...               handover, load / install / personalise over the placement's OTA channel (SIM: SMS-PP with
...               SCP80; microSD and eSE: HTTP remote administration), contactless activation; then the card
...               pays once online on the lab's NFC reader.
Library           paylab.fixtures.robot.PaylabLibrary
Suite Setup       Open Rig
Suite Teardown    Close Rig
Test Template     Air Issuance Should Work
Test Teardown     Ledger Should Balance


*** Test Cases ***                               MODE        PLACEMENT
SIM Bank And Operator Directly                   direct      sim
    [Tags]    REQ-ISSUE-SIM-DIRECT-01    REQ-COOP-DIRECT-01    REQ-SE-SIM-01    REQ-OTA-SMSPP-01    needs:se-sim
    ...    needs:backend    needs:nfc-reader    needs:nfc-emulator
SIM Via The UnionPay TSM                         unionpay    sim
    [Tags]    REQ-ISSUE-SIM-UNIONPAY-01    REQ-COOP-UNIONPAY-01    REQ-SE-SIM-01    REQ-OTA-SMSPP-01    needs:se-sim
    ...    needs:backend    needs:nfc-reader    needs:nfc-emulator
SIM Via The MTPS Hub                             mtps        sim
    [Tags]    REQ-ISSUE-SIM-MTPS-01    REQ-COOP-MTPS-01    REQ-SE-SIM-01    REQ-OTA-SMSPP-01    needs:se-sim
    ...    needs:backend    needs:nfc-reader    needs:nfc-emulator
MicroSD Bank And Operator Directly               direct      microsd
    [Tags]    REQ-ISSUE-MICROSD-DIRECT-01    REQ-COOP-DIRECT-01    REQ-SE-MICROSD-01    REQ-OTA-HTTP-01
    ...    needs:se-microsd    needs:backend    needs:nfc-reader    needs:nfc-emulator
MicroSD Via The UnionPay TSM                     unionpay    microsd
    [Tags]    REQ-ISSUE-MICROSD-UNIONPAY-01    REQ-COOP-UNIONPAY-01    REQ-SE-MICROSD-01    REQ-OTA-HTTP-01
    ...    needs:se-microsd    needs:backend    needs:nfc-reader    needs:nfc-emulator
MicroSD Via The MTPS Hub                         mtps        microsd
    [Tags]    REQ-ISSUE-MICROSD-MTPS-01    REQ-COOP-MTPS-01    REQ-SE-MICROSD-01    REQ-OTA-HTTP-01
    ...    needs:se-microsd    needs:backend    needs:nfc-reader    needs:nfc-emulator
ESE Bank And Operator Directly                   direct      ese
    [Tags]    REQ-ISSUE-ESE-DIRECT-01    REQ-COOP-DIRECT-01    REQ-SE-ESE-01    REQ-OTA-HTTP-01    needs:se-ese
    ...    needs:backend    needs:nfc-reader    needs:nfc-emulator
ESE Via The UnionPay TSM                         unionpay    ese
    [Tags]    REQ-ISSUE-ESE-UNIONPAY-01    REQ-COOP-UNIONPAY-01    REQ-SE-ESE-01    REQ-OTA-HTTP-01    needs:se-ese
    ...    needs:backend    needs:nfc-reader    needs:nfc-emulator
ESE Via The MTPS Hub                             mtps        ese
    [Tags]    REQ-ISSUE-ESE-MTPS-01    REQ-COOP-MTPS-01    REQ-SE-ESE-01    REQ-OTA-HTTP-01    needs:se-ese
    ...    needs:backend    needs:nfc-reader    needs:nfc-emulator


*** Keywords ***
Air Issuance Should Work
    [Arguments]    ${mode}    ${placement}
    ${issued}=    Issue Card Over The Air    ${mode}    ${placement}
    Issuance Should Have Completed    ${issued}
    Should Be Equal    ${issued.app_state}    active
    Issued Card Should Pay    ${issued}    1.00
