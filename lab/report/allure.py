"""The Allure 3 HTML report, generated offline with the pinned npm package and stripped of analytics.

allure-pytest and allure-robotframework write into one results folder; ``allure generate`` (npm
``allure`` 3.18.0, pinned in ``tools/allure/package-lock.json`` and installed by ``make``) turns it
into a single self-contained ``index.html`` (awesome plugin, ``singleFile: true``), with trends kept
in a JSONL ``historyPath`` across runs.

Allure 3.18 embeds a Google Tag Manager loader and a ``gtag(...)`` configuration in its page
(``ALLURE_NO_ANALYTICS`` affects only the classic plugin). An auditor's report must never call out,
so :func:`strip_analytics` removes both and :func:`external_references` lists what is left; the
tests and :func:`generate_allure_report` assert that nothing is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..protocol.errors import PaylabError

REPO_ROOT = Path(__file__).resolve().parents[2]
ALLURE_DIR = REPO_ROOT / "tools" / "allure"
ALLURE_VERSION = "3.18.0"

_GTM_LOADER = re.compile(r"<script[^>]*\bsrc=[\"']https?://[^\"']*googletagmanager\.com[^\"']*[\"'][^>]*>\s*</script>",
                         re.IGNORECASE)
_GTAG_BLOCK = re.compile(r"<script[^>]*>(?:(?!</script>).)*?\bgtag\s*\((?:(?!</script>).)*?</script>",
                         re.IGNORECASE | re.DOTALL)
# what would make the page fetch from the network: src/href/url() pointing at http(s) or //host
_EXTERNAL = re.compile(r"""(?:\b(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|"""
                       r"""googletagmanager|google-analytics|gtag\s*\()""", re.IGNORECASE)


class AllureError(PaylabError):
    """The Allure CLI is missing or failed; the message says how to fix it."""


@dataclass(frozen=True)
class AllureReport:
    """Where the single-file report landed and what was removed from it."""

    html: Path
    removed_scripts: int


def allure_command() -> Path:
    """The pinned Allure CLI (``make`` installs it into ``tools/allure``)."""
    binary = ALLURE_DIR / "node_modules" / ".bin" / "allure"
    if not binary.exists():
        raise AllureError(f"Allure {ALLURE_VERSION} is not installed: run `npm ci --prefix {ALLURE_DIR}` "
                          "(make does it; needs node and npm)")
    return binary


def strip_analytics(html: str) -> tuple[str, int]:
    """Remove the tag-manager loader and every inline script that calls ``gtag``; returns the count."""
    html, loaders = _GTM_LOADER.subn("", html)
    html, blocks = _GTAG_BLOCK.subn("", html)
    return html, loaders + blocks


def external_references(html: str) -> list[str]:
    """Snippets of ``html`` that would reach the network (empty for an offline-safe page).

    The SVG namespace ``http://www.w3.org/2000/svg`` is an identifier, not a fetch, and is ignored."""
    found = []
    for match in _EXTERNAL.finditer(html):
        snippet = html[max(0, match.start() - 20): match.end() + 40]
        found.append(snippet.replace("\n", " "))
    return found


def generate_allure_report(results_dir: Path, out_dir: Path, *, name: str = "paylab campaign",
                           history: Path | None = None, timeout: float = 300.0) -> AllureReport:
    """``allure generate`` of ``results_dir`` into ``out_dir/index.html`` (single file), analytics stripped.

    ``history``: a JSONL file Allure appends this run to (trends across runs)."""
    results_dir, out_dir = results_dir.resolve(), out_dir.resolve()   # allure runs with another cwd
    history = history.resolve() if history is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"name": name, "output": str(out_dir),
              "plugins": {"awesome": {"options": {"singleFile": True, "reportLanguage": "en", "reportName": name}}}}
    if history is not None:
        config["historyPath"] = str(history)
    config_path = out_dir.parent / f".{out_dir.name}-allurerc.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    env = {**os.environ, "ALLURE_NO_ANALYTICS": "true", "DO_NOT_TRACK": "1"}
    try:
        proc = subprocess.run([str(allure_command()), "generate", str(results_dir), "-c", str(config_path),
                               "-o", str(out_dir)], capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=out_dir.parent, check=False)
    except subprocess.TimeoutExpired:
        raise AllureError(f"allure generate did not finish within {timeout:.0f} s") from None
    finally:
        config_path.unlink(missing_ok=True)
    html_path = out_dir / "index.html"
    if proc.returncode != 0 or not html_path.exists():
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        first = next((ln for ln in lines if "rror" in ln or "No test" in ln), lines[0] if lines else "no output")
        raise AllureError(f"allure generate failed (exit {proc.returncode}): {first}")
    html, removed = strip_analytics(html_path.read_text(encoding="utf-8"))
    left = external_references(html)
    if left:
        raise AllureError(f"the Allure report still references the network: {left[0]!r}")
    html_path.write_text(html, encoding="utf-8")
    return AllureReport(html_path, removed)


def allure_available() -> bool:
    """True when the pinned CLI is installed and node is on PATH."""
    return (ALLURE_DIR / "node_modules" / ".bin" / "allure").exists() and shutil.which("node") is not None
