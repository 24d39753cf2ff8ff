"""Campaign planning without running anything: the campaign file's validation (``FILE:LINE: field``),
rig selectors against the inventory, assignment of tests to rigs, and the retry/resume rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from paylab.lab.campaign.campaign_file import CampaignFileError, check_rigs, load_campaign
from paylab.lab.campaign.plan import PlannedTest, assign
from paylab.lab.campaign.runner import is_done, needs_retry
from paylab.lab.rig.inventory import parse_inventory

GOOD = """campaign: nightly
rigs:
  - name: sim
  - capabilities: [backend]
    count: 1
suites:
  - path: suites
    framework: pytest
    workers: 2
retry:
  infra: 2
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "suites").mkdir(exist_ok=True)
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_campaign_file_is_read_with_its_defaults(tmp_path: Path) -> None:
    camp = load_campaign(write(tmp_path, GOOD), base=tmp_path)
    assert camp.name == "nightly"
    assert camp.suites[0].path == tmp_path / "suites"
    assert (camp.suites[0].framework, camp.suites[0].workers) == ("pytest", 2)
    assert (camp.retry.infra, camp.retry.product) == (2, 0)
    assert (camp.rigs[0].name, camp.rigs[1].capabilities, camp.rigs[1].count) == ("sim", ("backend",), 1)
    assert camp.lease_ttl_s > camp.heartbeat_s


@pytest.mark.parametrize(("change", "expected"), [
    (("framework: pytest", "framework: nose"), "c.yaml:8: suites[0].framework: must be one of pytest, robot"),
    (("path: suites", "path: nowhere"), "c.yaml:7: suites[0].path: nowhere does not exist"),
    (("  infra: 2", "  infra: many"), "c.yaml:11: retry.infra: must be an integer"),
    (("    count: 1", "    count: 1\n    colour: red"), "c.yaml:6: rigs[1].colour: unknown field"),
    (("campaign: nightly", "campaign: night ly"), "c.yaml:1: campaign: 'night ly' may only hold"),
    (("retry:\n  infra: 2", "lease:\n  ttl_s: 5\n  heartbeat_s: 9"), "c.yaml:12: lease.heartbeat_s: must be shorter"),
])
def test_campaign_file_errors_name_file_line_and_field(tmp_path: Path, change: tuple[str, str],
                                                       expected: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(CampaignFileError) as caught:
        load_campaign(path, base=tmp_path)
    assert str(caught.value).startswith(str(tmp_path / expected.split(":", 1)[0]) + ":" + expected.split(":", 1)[1])


def test_rig_selectors_are_checked_against_the_inventory(tmp_path: Path) -> None:
    inventory = parse_inventory('rigs:\n  bench-1:\n    capabilities: [backend]\n'
                                '    backend: {acquirer: "127.0.0.1:9001"}\n')
    check_rigs(load_campaign(write(tmp_path, GOOD), base=tmp_path), inventory)
    camp = load_campaign(write(tmp_path, GOOD.replace("name: sim", "name: bench-9")), base=tmp_path)
    with pytest.raises(CampaignFileError, match=r"c.yaml:3: rigs\[0\].name: no rig 'bench-9'"):
        check_rigs(camp, inventory)
    camp = load_campaign(write(tmp_path, GOOD.replace("[backend]", "[backend, host]")), base=tmp_path)
    with pytest.raises(CampaignFileError, match=r"c.yaml:4: rigs\[1\].capabilities: no rig .* backend, host"):
        check_rigs(camp, inventory)


def t(name: str, *needs: str, robot: str | None = None) -> PlannedTest:
    return PlannedTest(name, "robot" if robot else "pytest", Path("suites"), ("REQ-X",), needs,
                       Path(robot) if robot else None)


def test_assign_balances_and_keeps_robot_files_together() -> None:
    tests = [t("a"), t("b"), t("c", "pos"), t("d"), t("r1", robot="x.robot"), t("r2", robot="x.robot")]
    plan = assign(tests, {"rig-1": ["pos", "backend"], "rig-2": ["backend"]})
    shares = {name: [x.id for x in share.tests] for name, share in plan.shares.items()}
    assert shares == {"rig-1": ["a", "c", "r1", "r2"], "rig-2": ["b", "d"]}
    assert plan.total == 6
    assert (plan.not_run, plan.deselected) == ([], [])


def test_assign_tells_deselected_from_not_run() -> None:
    tests = [t("ese", "se-ese"), t("pos", "pos"), t("plain")]
    plan = assign(tests, {"rig-2": ["backend"]}, {"rig-1": ["pos", "backend"], "rig-2": ["backend"]})
    assert [(x.id, why) for x, why in plan.deselected] == [("ese", "no rig of the campaign has capability se-ese")]
    assert [x.id for x, _ in plan.not_run] == ["pos"]  # rig-1 could, but is busy or quarantined
    assert "rig-1" in plan.not_run[0][1]
    assert [x.id for x in plan.shares["rig-2"].tests] == ["plain"]


def test_retry_and_resume_rules(tmp_path: Path) -> None:
    camp = load_campaign(write(tmp_path, GOOD), base=tmp_path)  # retry infra 2, product 0
    infra = {"verdict": "error", "category": "infra", "attempt": 1}
    assert needs_retry(infra, camp)
    assert not needs_retry({**infra, "attempt": 3}, camp)
    assert not needs_retry({"verdict": "failed", "category": "product", "attempt": 1}, camp)
    assert is_done({"verdict": "failed", "category": "product", "attempt": 1}, camp, resuming=True)
    assert is_done({**infra, "attempt": 3}, camp)  # retries used up: final for this run...
    assert not is_done({**infra, "attempt": 3}, camp, resuming=True)  # ...but --resume tries it again
    assert not is_done({"verdict": "not-run", "category": "infra", "attempt": 1}, camp, resuming=True)
    assert is_done({"verdict": "deselected", "category": "none", "attempt": 1}, camp, resuming=True)


def test_a_robot_file_goes_where_most_of_it_can_run() -> None:
    tests = [t("r1", robot="x.robot"), t("r2", "pos", robot="x.robot"), t("r3", "se-ese", robot="x.robot")]
    plan = assign(tests, {"rig-1": ["backend"], "rig-2": ["backend", "pos"]})
    assert [x.id for x in plan.shares["rig-2"].tests] == ["r1", "r2"]
    assert plan.shares["rig-1"].tests == []
    assert [x.id for x, _ in plan.deselected] == ["r3"]


def test_final_results_keep_one_result_per_test_and_repeat(tmp_path: Path) -> None:
    from paylab.fixtures.results import ResultWriter, final_results, read_results

    path = tmp_path / "results.jsonl"
    writer = ResultWriter(path)
    for repeat, attempt, verdict in ((1, 1, "passed"), (2, 1, "error"), (2, 2, "passed"), (3, 1, "failed")):
        writer.write({"id": "t", "verdict": verdict, "repeat": repeat, "attempt": attempt})
    writer.write({"id": "old", "verdict": "passed", "attempt": 1})  # a line without "repeat" is repeat 1
    finals = final_results(read_results([path]))
    assert {key: line["verdict"] for key, line in finals.items()} == {
        ("t", 1): "passed", ("t", 2): "passed", ("t", 3): "failed", ("old", 1): "passed"}
    assert finals[("t", 2)]["attempts"] == 2  # the retry within repeat 2 replaced its infra error


def test_a_module_that_fails_to_import_stops_the_collection(tmp_path: Path) -> None:
    """A broken test module must not silently drop its tests from the campaign (pytest exits 2)."""
    from paylab.lab.campaign.campaign_file import SuiteSpec
    from paylab.lab.campaign.plan import CollectionError, collect_pytest

    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "test_fine.py").write_text("def test_fine():\n    pass\n")
    (tmp_path / "suites" / "test_broken.py").write_text("import no_such_module_anywhere\n")
    suite = SuiteSpec(path=tmp_path / "suites", framework="pytest")
    with pytest.raises(CollectionError, match=r"test_broken\.py") as caught:
        collect_pytest(suite, cwd=tmp_path)
    assert "\n" not in str(caught.value)
    with pytest.raises(CollectionError, match="took more than"):
        collect_pytest(suite, cwd=tmp_path, timeout=0.01)
