*** Settings ***
Documentation     Remote payments (domain brief 7): SE mode (the SE signs the order digest with SM2 after VERIFY
...               PIN) and non-SE mode (payment password and a 6-digit SMS code bound to the order: right,
...               wrong, expired, exhausted). Money moves only when the payment is approved, exactly once.
Library           paylab.fixtures.robot.PaylabLibrary
Suite Setup       Open Rig
Suite Teardown    Close Rig
Test Teardown     Ledger Should Balance


*** Test Cases ***
SE Mode Pays And A Retry Does Not Debit Twice
    [Tags]    REQ-RP-SE-01    needs:se-ese    needs:backend
    ${phone}=    Fresh Phone    ese
    ${paid}=    Pay Remotely With SE    123.45    ${phone}    retry=${True}
    Response Code Should Be    00
    Should Be Equal    ${paid.order_status}    paid
    Should Be Equal As Integers    ${paid.ledger_delta}    -12345
    Should Be Equal As Integers    ${paid.ledger_entries}    1
    Should Be True    ${paid.retry.approved}

SE Mode With A Wrong PIN Is Refused
    [Tags]    REQ-RP-SE-01    needs:se-ese    needs:backend
    ${phone}=    Fresh Phone    ese
    ${paid}=    Pay Remotely With SE    10.00    ${phone}    pin=9999
    Should Not Be Equal    ${paid.response_code}    00
    Should Be Equal As Integers    ${paid.ledger_delta}    0

SMS Code Right
    [Tags]    REQ-RP-NONSE-01    needs:se-sim    needs:backend
    ${phone}=    Fresh Phone    sim
    ${paid}=    Pay Remotely With SMS Code    56.78    right    ${phone}
    Response Code Should Be    00    ${paid}
    Should Be Equal As Integers    ${paid.ledger_delta}    -5678
    Should Be Equal As Integers    ${paid.ledger_entries}    1
    Should Be True    ${paid.retry.approved}

SMS Code Wrong
    [Tags]    REQ-RP-NONSE-02    needs:se-sim    needs:backend
    ${phone}=    Fresh Phone    sim
    ${paid}=    Pay Remotely With SMS Code    5.00    wrong    ${phone}
    Should Be Equal    ${paid.outcome}    wrong-code
    Should Be Equal As Integers    ${paid.http_status}    403
    Should Be Equal As Integers    ${paid.ledger_delta}    0
    Should Not Be Equal    ${paid.tries_left}    ${None}

SMS Code Expired
    [Tags]    REQ-RP-NONSE-03    needs:se-sim    needs:backend
    ${phone}=    Fresh Phone    sim
    ${paid}=    Pay Remotely With SMS Code    5.00    expired    ${phone}
    Should Be Equal    ${paid.outcome}    code-expired
    Should Be Equal As Integers    ${paid.http_status}    410
    Should Be Equal As Integers    ${paid.ledger_delta}    0

SMS Code Tries Exhausted
    [Tags]    REQ-RP-NONSE-04    needs:se-sim    needs:backend
    ${phone}=    Fresh Phone    sim
    ${paid}=    Pay Remotely With SMS Code    5.00    exhausted    ${phone}
    Should Be Equal    ${paid.outcome}    code-locked
    Should Be Equal As Integers    ${paid.http_status}    423
    Should Be True    ${paid.locked}
    Should Be Equal As Integers    ${paid.ledger_delta}    0
