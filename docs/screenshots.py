"""Take the README screenshots with headless Chromium (Debian's /usr/bin/chromium).

    .venv/bin/python docs/screenshots.py --url http://127.0.0.1:8000 --password PW [--out docs/img]

Logs in as ``operator`` (action buttons show) and captures, in English and Arabic, light and dark:
the overview and the page of the first critical module; and the overview at a phone's 375 px.
Files: ``{overview,module}-{en,ar}-{light,dark}.png`` and ``phone-{en,ar}.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def login(page, url: str, user: str, password: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.press("input[name=password]", "Enter")  # the header has other submit buttons (language)
    page.wait_for_url(f"{url}/")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--user", default="operator")
    p.add_argument("--password", required=True)
    p.add_argument("--out", default=str(Path(__file__).parent / "img"))
    p.add_argument("--chromium", default="/usr/bin/chromium")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        for lang in ("en", "ar"):
            for scheme in ("light", "dark"):
                context = browser.new_context(
                    viewport={"width": 1360, "height": 860},
                    color_scheme=scheme,
                    extra_http_headers={"Accept-Language": lang},
                )
                page = context.new_page()
                login(page, args.url, args.user, args.password)
                page.screenshot(path=str(out / f"overview-{lang}-{scheme}.png"))
                page.goto(f"{args.url}/?status=critical")
                page.locator("table.modules a[href*='/modules/']").first.click()
                page.wait_for_load_state("networkidle")
                page.locator("details.confirm summary").first.click()  # the confirmation step, open
                page.screenshot(path=str(out / f"module-{lang}-{scheme}.png"))
                context.close()
            context = browser.new_context(
                viewport={"width": 375, "height": 812},
                is_mobile=True,
                has_touch=True,
                device_scale_factor=2,
                extra_http_headers={"Accept-Language": lang},
            )
            page = context.new_page()
            login(page, args.url, args.user, args.password)
            page.screenshot(path=str(out / f"phone-{lang}.png"))
            context.close()
        browser.close()
    print(f"screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
