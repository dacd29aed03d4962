"""axe-core, from the npm registry (`make test` installs it in .cache/axe), run on a
console page in the browser: a test fails on any serious or critical violation of WCAG
2.1 A and AA or of axe's best practices, and says which rule, where and how to fix it."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

from tests.peers.tools import unavailable

AXE = Path(__file__).resolve().parents[2] / ".cache/axe/node_modules/axe-core/axe.min.js"
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def assert_accessible(page: Page) -> None:
    if not AXE.exists():
        unavailable(f"axe-core is not installed at {AXE} (make test installs it)")
    # Evaluated through the browser's debugging protocol, which the page's CSP (scripts
    # from 'self' only) does not govern; a <script> tag would be refused, rightly.
    page.evaluate(AXE.read_text())
    results = page.evaluate(
        "rules => axe.run(document, {runOnly: {type: 'tag', values: rules}})", RULES
    )
    bad = [v for v in results["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe-core {results['testEngine']['version']} on {page.url}:\n" + "\n".join(
        f"  {v['id']} [{v['impact']}] {v['help']} ({v['helpUrl']}): "
        + ", ".join(str(n["target"][0]) for n in v["nodes"][:5])
        for v in bad
    )
