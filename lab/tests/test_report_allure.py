"""The Allure 3 single-file report: generated offline by the pinned CLI, analytics stripped, and
rendered by a real headless chromium with no outgoing request and no console error."""

import json

import pytest

from paylab.lab.report.allure import (
    AllureError,
    external_references,
    generate_allure_report,
    strip_analytics,
)
from paylab.lab.report.browser import check_page

GTM_PAGE = """<html><head><script src="data:text/javascript;base64,AA=="></script>
<script async src="https://www.googletagmanager.com/gtag/js?id=G-XXXX"></script>
<script>
  window.dataLayer = window.dataLayer || [];
  function gtag(){dataLayer.push(arguments);}
  gtag('js', new Date());
</script>
<script async>window.allureReportData = {};</script>
<svg xmlns="http://www.w3.org/2000/svg"></svg></head><body></body></html>"""


def test_strip_analytics_removes_loader_and_config_only():
    html, removed = strip_analytics(GTM_PAGE)
    assert removed == 2
    assert "googletagmanager" not in html
    assert "gtag(" not in html
    assert "allureReportData" in html
    assert "data:text/javascript" in html
    assert external_references(html) == []
    assert external_references(GTM_PAGE)


def test_external_references_catch_links_and_css_urls():
    assert external_references('<a href="https://example.org/x">x</a>')
    assert external_references('<img src="//cdn.example.org/a.png">')
    assert external_references("<style>body{background:url('http://x/y.png')}</style>")
    assert external_references('<a href="#traceability">m</a><img src="data:image/png;base64,AA">') == []


def _results(folder):
    folder.mkdir()
    for i, status in enumerate(("passed", "failed", "broken")):
        (folder / f"{i}-result.json").write_text(json.dumps({
            "uuid": f"u{i}", "historyId": f"h{i}", "name": f"test {status}", "fullName": f"suite.test_{i}",
            "status": status, "stage": "finished", "start": 1_700_000_000_000 + i, "stop": 1_700_000_000_100 + i,
            "labels": [{"name": "suite", "value": "paylab"}, {"name": "tag", "value": "REQ-CL-ONLINE-01"}]}))


def test_generate_single_file_report_without_analytics_and_render_it_offline(tmp_path):
    _results(tmp_path / "allure-results")
    report = generate_allure_report(tmp_path / "allure-results", tmp_path / "allure", name="paylab test",
                                    history=tmp_path / "history.jsonl")
    html = report.html.read_text(encoding="utf-8")
    assert report.removed_scripts >= 1
    assert "googletagmanager" not in html
    assert "gtag(" not in html
    assert external_references(html) == []
    assert sorted(p.name for p in (tmp_path / "allure").iterdir()) == ["index.html", "summary.json",
                                                                      "test-results.json"]
    page = check_page(report.html, selectors=("#app",), screenshot=tmp_path / "allure" / "screenshot.png",
                      wait_for="text=test failed")
    assert page.outgoing_requests == []
    assert page.console_errors == []
    assert page.page_errors == []
    assert page.visible["#app"]
    assert "test passed" in page.texts["#app"]
    assert (tmp_path / "allure" / "screenshot.png").stat().st_size > 1000


def test_generate_refuses_missing_results(tmp_path):
    with pytest.raises(AllureError, match=r"allure generate failed|no output"):
        generate_allure_report(tmp_path / "nothing-here", tmp_path / "out")
