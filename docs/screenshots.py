"""Take the README screenshots with headless Chromium (Debian's /usr/bin/chromium).

    .venv/bin/python docs/screenshots.py --url http://127.0.0.1:8000 --password PW [--out docs/img]

Logs in as ``manager`` and captures the overview and the page of the first critical module.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--user", default="manager")
    p.add_argument("--password", required=True)
    p.add_argument("--out", default=str(Path(__file__).parent / "img"))
    p.add_argument("--chromium", default="/usr/bin/chromium")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(f"{args.url}/accounts/login/")
        page.fill("input[name=username]", args.user)
        page.fill("input[name=password]", args.password)
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_url(f"{args.url}/")
        page.screenshot(path=str(out / "overview.png"), full_page=True)
        page.goto(f"{args.url}/?status=critical")
        link = page.locator("table a[href*='/modules/']").first
        link.click()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / "module-critical.png"), full_page=True)
        browser.close()
    print(f"screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
