"""The documentation site looked at as a reader would: built with `mkdocs build --strict`, every
internal link and anchor followed, then served on 127.0.0.1 and opened in Debian's Chromium
(headless): the start page, the column reference and a findings page render, and the
navigation lists every page. Screenshots of the three pages are left for a person to look at,
in docs-screenshots/ at the top of the work tree (git-ignored), or $BH_DOCS_SCREENSHOTS.

Marked `build` (it builds the site: seconds, not part of `make test-fast`). Chromium comes
from `tools/bootstrap-system.sh --tests` (what `make test` runs); without it the test fails
saying so.
"""

from __future__ import annotations

import functools
import html.parser
import os
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest
import yaml

from harness.results.metrics import METRICS

pytestmark = pytest.mark.build

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = Path(os.environ.get("BH_DOCS_SCREENSHOTS", ROOT / "docs-screenshots"))
PAGES = {                         # page -> text its rendered DOM must hold
    "index.html": "The problem it measures",
    "reference/columns.html": "thp_lost_per_ballooned_mib",
    "findings/rfc.html": "Reproduce:",
}


class _Links(html.parser.HTMLParser):
    """The hrefs and srcs of a page, and the ids it defines."""

    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key):
                self.links.append(a[key])


def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text(errors="replace"))
    return p


def _nav_pages(items) -> list[str]:
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            for value in item.values():
                out += [value] if isinstance(value, str) else _nav_pages(value)
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_no_internal_link_or_anchor_is_broken(site):
    parsed = {p: _parse(p) for p in site.rglob("*.html")}
    broken = []
    for page, links in parsed.items():
        for link in links.links:
            url = urlparse(link)
            if url.scheme or link.startswith("//"):
                continue                                   # the outside world: not ours to check
            target_path, anchor = urldefrag(link)
            base = site if target_path.startswith("/") else page.parent   # 404.html links from the root
            target = (base / unquote(target_path).lstrip("/")).resolve() if target_path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {link} (no such file)")
            elif anchor and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if unquote(anchor) not in ids:
                    broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("chromium is not installed: run `tools/bootstrap-system.sh --tests` (make test does)")


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a, **k: None                          # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _browser(url: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", "--virtual-time-budget=3000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_the_browser_renders_the_page_and_leaves_a_screenshot(served, page):
    dom = _browser(f"{served}/{page}", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert PAGES[page] in dom.stdout, f"{page}: the rendered page lacks {PAGES[page]!r}"
    assert "md-content" in dom.stdout and "<h1" in dom.stdout        # the theme laid it out
    if page == "reference/columns.html":                            # the generated table, every column
        missing = [c for c in METRICS if f"<code>{c}</code>" not in dom.stdout]
        assert not missing, f"columns missing from the rendered reference: {missing}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    png = SCREENSHOTS / (page.replace("/", "-").replace(".html", ".png"))
    png.unlink(missing_ok=True)
    shot = _browser(f"{served}/{page}", f"--screenshot={png}", "--window-size=1280,2000")
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, f"{png}: no real screenshot"


def test_the_navigation_lists_every_page(served):
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = _nav_pages(config["nav"])
    dom = _browser(f"{served}/index.html", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    nav = _Links()
    nav.feed(dom.stdout)
    hrefs = {urldefrag(h)[0] for h in nav.links}
    missing = [p for p in pages if p.replace(".md", ".html") not in hrefs]
    assert not missing, f"the start page's navigation lacks: {missing}"
