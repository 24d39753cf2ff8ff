"""The Robot keyword library (``paylab.fixtures.robot.PaylabLibrary``) end to end, and its libdoc.

A small Robot suite runs against the real ``sim`` rig (pcscd + vpcd, the POS simulator on a pty, the
embedded backend) with the campaign runner's two listeners: paylab's result listener and
allure-robotframework. Checks: result lines carry the requirement ids and verdicts, an
infrastructure error fails with ``INFRA:`` and is classified ``infra``, a wrong status word is a
``product`` failure, taps record ``tap-ms`` timings, allure results are written, and the committed
libdoc ``fixtures/robot/PaylabLibrary.html`` is up to date and loads nothing from the network.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBDOC = ROOT / "fixtures" / "robot" / "PaylabLibrary.html"
LIBRARY = "paylab.fixtures.robot.PaylabLibrary"

SUITE = """\
*** Settings ***
Library           paylab.fixtures.robot.PaylabLibrary
Suite Setup       Open Rig
Suite Teardown    Close Rig

*** Test Cases ***
Contactless Reader Selects PPSE
    [Tags]    REQ-DRV-PCSC-01    needs:pcsc-contactless
    ${response}=    Send APDU    contactless    00A404000E325041592E5359532E444446303100
    Status Word Should Be    9000
    Status Word Should Be    90XX    ${response}
    Send APDU    contactless    00A4040008A00000033301010200
    ${record}=    Send APDU    contactless    00B2010C00
    Status Word Should Be    9000    ${record}
    Should Be Equal    ${record}    ${record.hex}
    Log    ${record}

POS Reports Its Identity
    [Tags]    REQ-DRV-ECR-01    needs:pos
    ${identity}=    POS Identity Should Report Model
    Should Not Be Empty    ${identity}[serial]

Offline E-Cash Tap On The Lab Reader
    [Tags]    REQ-CL-OFFLINE-01    REQ-DRV-PCSC-01    needs:pcsc-contactless    needs:backend
    ${card}=    Enrol Card    ecash    ese    ecash=50.00
    ${tap}=    Tap Card On Reader    ${card}    1.00    pcsc
    E-Cash Balance On Card Should Be    ${card}    49.00
    Should Be Equal    ${tap.outcome}    APPROVED

Wrong Status Word Is A Product Failure
    [Tags]    REQ-DRV-PCSC-01    needs:pcsc-contact
    Send APDU    contact    00A4040005F0DEADBEEF00
    Status Word Should Be    9000

Pulled Card Is An Infrastructure Error
    [Tags]    REQ-DRV-PCSC-01    needs:pcsc-contact
    [Teardown]    Insert Card Into Reader    contact
    Pull Card From Reader    contact
    Send APDU    contact    00A404000E315041592E5359532E444446303100    timeout=0.5

Lost Rig Is An Infrastructure Error
    [Tags]    REQ-DRV-PCSC-01    needs:pcsc-contact
    Close Rig
    Send APDU    contact    00A404000E315041592E5359532E444446303100
"""

SETUP_FAILURE = """\
*** Settings ***
Library           paylab.fixtures.robot.PaylabLibrary
Suite Setup       Send APDU    contact    00A404000E315041592E5359532E444446303100

*** Test Cases ***
Rig Never Came Up
    [Tags]    REQ-DRV-PCSC-01    needs:pcsc-contact
    Log    never runs
"""


def _run_robot(tmp_path: Path, suites: dict[str, str], *extra: str, timeout: float = 90.0) -> tuple[int, str]:
    """``python -m robot`` (what the campaign runner runs) in its own process group, always reaped."""
    folder = tmp_path / "suites"
    folder.mkdir()
    for name, text in suites.items():
        (folder / name).write_text(text, encoding="utf-8")
    cmd = [sys.executable, "-m", "robot", "--outputdir", str(tmp_path / "out"), "--console", "dotted", *extra,
           str(folder)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, out


@pytest.fixture(scope="module")
def robot_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("robot")
    results, allure = tmp / "results.jsonl", tmp / "allure-results"
    suites = {"library_check.robot": SUITE, "setup_failure.robot": SETUP_FAILURE}
    rc, out = _run_robot(tmp, suites, "--listener", f"paylab.fixtures.robot_listener.ResultListener:{results}:sim:1",
                         "--listener", f"allure_robotframework:{allure}", "--variable", "RIG:sim")
    lines = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()] if results.exists() \
        else []
    return {"rc": rc, "out": out, "lines": {line["name"]: line for line in lines}, "allure": allure, "tmp": tmp}


def test_result_lines_carry_requirements_and_verdicts(robot_run):
    lines = robot_run["lines"]
    assert robot_run["rc"] == 4, robot_run["out"]  # four failing tests, on purpose
    assert set(lines) == {"Contactless Reader Selects PPSE", "POS Reports Its Identity",
                          "Offline E-Cash Tap On The Lab Reader", "Wrong Status Word Is A Product Failure",
                          "Pulled Card Is An Infrastructure Error",
                          "Lost Rig Is An Infrastructure Error", "Rig Never Came Up"}, robot_run["out"]
    ppse = lines["Contactless Reader Selects PPSE"]
    assert (ppse["verdict"], ppse["category"], ppse["requirements"]) == ("passed", "none", ["REQ-DRV-PCSC-01"])
    assert ppse["framework"] == "robot"
    assert ppse["rig"] == "sim"
    assert lines["POS Reports Its Identity"]["verdict"] == "passed", lines["POS Reports Its Identity"]["message"]
    tap = lines["Offline E-Cash Tap On The Lab Reader"]
    assert tap["verdict"] == "passed", tap["message"]
    assert sorted(tap["requirements"]) == ["REQ-CL-OFFLINE-01", "REQ-DRV-PCSC-01"]
    assert len(tap["tap_to_approval_ms"]) == 1
    assert tap["tap_to_approval_ms"][0] > 0


def test_product_failure_and_infra_error_are_told_apart(robot_run):
    product = robot_run["lines"]["Wrong Status Word Is A Product Failure"]
    assert (product["verdict"], product["category"]) == ("failed", "product")
    assert product["message"] == "status word 6A82, expected 9000"
    pulled = robot_run["lines"]["Pulled Card Is An Infrastructure Error"]
    assert (pulled["verdict"], pulled["category"]) == ("failed", "infra")
    assert re.match(r"INFRA: (NoCard|CardRemoved|ReaderUnavailable): ", pulled["message"]), pulled["message"]
    infra = robot_run["lines"]["Lost Rig Is An Infrastructure Error"]
    assert (infra["verdict"], infra["category"]) == ("failed", "infra")
    assert infra["message"].startswith("INFRA: NotOnThisRig:"), infra["message"]


def test_infra_error_in_suite_setup_stays_infra(robot_run):
    """Robot prefixes "Parent suite setup failed:"; the library's listener keeps the INFRA mark first."""
    line = robot_run["lines"]["Rig Never Came Up"]
    assert (line["verdict"], line["category"]) == ("failed", "infra")
    assert line["message"].startswith("INFRA: parent suite setup failed: NotOnThisRig:"), line["message"]


def test_no_full_pan_in_robot_outputs(robot_run):
    """Enrolled cards have random PANs in the backend's BINs: none may appear unmasked in any output."""
    from paylab.lab.backend.config import load_config

    bins = [b for issuer in load_config().issuers for b in issuer.bins]
    pan = re.compile(r"(?<![0-9])(?:{})[0-9]{{7,13}}(?![0-9])".format("|".join(bins)))
    paths = [p for p in (robot_run["tmp"] / "out").iterdir() if p.is_file()]
    paths += [robot_run["tmp"] / "results.jsonl", *robot_run["allure"].iterdir()]
    assert len(paths) >= 5
    for path in paths:
        found = pan.findall(path.read_text(encoding="utf-8", errors="replace"))
        assert not found, f"unmasked PAN-like number in {path.name}"


def test_allure_results_written(robot_run):
    files = [json.loads(p.read_text(encoding="utf-8")) for p in robot_run["allure"].glob("*-result.json")]
    assert {f["name"] for f in files} >= {"Contactless Reader Selects PPSE", "Lost Rig Is An Infrastructure Error"}
    statuses = {f["name"]: f["status"] for f in files}
    assert statuses["Contactless Reader Selects PPSE"] == "passed"
    assert statuses["Wrong Status Word Is A Product Failure"] == "failed"


# -- libdoc ---------------------------------------------------------------------------------------------
def _libdoc_model(html: str) -> dict[str, Any]:
    """The keyword model libdoc embeds (``libdoc = {...};``), without what changes per run or machine."""
    match = re.search(r"^\s*libdoc = (\{.*\});?\s*$", html, re.MULTILINE)
    assert match, "no libdoc model in the HTML"
    model = json.loads(match.group(1))
    keywords = [{k: v for k, v in kw.items() if k not in ("source", "lineno")} for kw in model["keywords"]]
    return {"name": model["name"], "doc": model["doc"], "version": model["version"], "scope": model["scope"],
            "inits": [{k: v for k, v in kw.items() if k not in ("source", "lineno")} for kw in model["inits"]],
            "keywords": keywords}


def test_libdoc_is_up_to_date(tmp_path):
    from robot.libdoc import libdoc

    fresh = tmp_path / "PaylabLibrary.html"
    libdoc(LIBRARY, str(fresh), format="HTML", quiet=True)
    committed = _libdoc_model(LIBDOC.read_text(encoding="utf-8"))
    regenerated = _libdoc_model(fresh.read_text(encoding="utf-8"))
    assert [k["name"] for k in committed["keywords"]] == [k["name"] for k in regenerated["keywords"]], (
        "fixtures/robot/PaylabLibrary.html is stale: run python -m robot.libdoc "
        "paylab.fixtures.robot.PaylabLibrary fixtures/robot/PaylabLibrary.html")
    assert committed == regenerated, "keyword arguments or docs changed: regenerate fixtures/robot/PaylabLibrary.html"
    for name in ("Open Rig", "Close Rig", "Enrol Card", "Issue Card Over The Air", "Load E-Cash", "Tap Card On POS",
                 "Tap Card On Reader", "Remove Card During Tap", "Pay Remotely With SE", "Pay Remotely With SMS Code",
                 "Lock Lost Phone", "Status Word Should Be", "Response Code Should Be", "Ledger Should Balance",
                 "Balance Should Have Changed By", "Send APDU", "POS Identity Should Report Model"):
        assert name in {k["name"] for k in committed["keywords"]}, name


# What libdoc itself writes: plain hyperlinks in its help texts and type docs, SVG namespaces, a comment
# in the embedded template engine. None is loaded when the page is viewed.
LIBDOC_LINK_HOSTS = {"robotframework.org", "docs.python.org", "www.w3.org", "handlebarsjs.com"}


def test_libdoc_loads_nothing_from_the_network():
    html = LIBDOC.read_text(encoding="utf-8")
    loaded = re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//[^"'\s>]+|@import\s+url\(\s*["']?https?:"""
                        r"""|url\(\s*["']?(?:https?:)?//""", html, re.IGNORECASE)
    stylesheet_or_script = [m for m in loaded if not m.lower().startswith("href")]
    assert stylesheet_or_script == [], stylesheet_or_script
    assert not re.search(r"<link[^>]+href=[\"']?https?://", html, re.IGNORECASE), "external stylesheet or font"
    assert not re.search(r"<script[^>]+src=[\"']?https?://", html, re.IGNORECASE), "external script"
    hosts = {m.group(1) for m in re.finditer(r"https?://([A-Za-z0-9.\-]+)", html)}
    assert hosts <= LIBDOC_LINK_HOSTS, hosts - LIBDOC_LINK_HOSTS
