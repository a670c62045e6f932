"""Screenshot pages of the built book in headless Chromium and report what a reader sees.

Each page of the HTML folder (default book/_build/html) is opened from disk at a laptop width
(1280 px; requests to the network are blocked and listed) and saved full-page as PNG. For
each page the report gives

* tables wider than their container: the table scrolls horizontally or is clipped by a box
  that has its own overflow, or spills over the text column when none has;
* code cells: how many inputs are visible, collapsed (hide-input, hide-cell) or removed;
* figures (``img`` in cell outputs): with a caption (a ``figure`` with a non-empty
  ``figcaption``), without one, and broken (not loaded).

The report is printed for people and written as JSON (``<out>/report.json``; ``--json``
prints it instead of the summary). With ``--fail-on`` (or ``--strict`` for all checks) the
exit status is 1 when a page has such a finding; 2 means a page or the browser is missing.

    .venv/bin/python tools/screenshot_book.py                               # every page
    .venv/bin/python tools/screenshot_book.py 02-layers-cka 09-summary --out /tmp/shots
    .venv/bin/python tools/screenshot_book.py --fail-on wide-tables,uncaptioned-figures
    .venv/bin/python tools/screenshot_book.py --width 1400 --save-width 700 --colors 64 \
        --out docs/screenshots                                # small PNGs to commit
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from check_lab import DEFAULT_CHROMIUM, browser_missing, launch_chromium

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HTML = ROOT / "book" / "_build" / "html"
DEFAULT_OUT = ROOT / "build" / "screenshots"
SKIPPED_PAGES = {"genindex", "search", "py-modindex"}
SKIPPED_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static"}
CHECKS = ("wide-tables", "visible-code", "uncaptioned-figures", "broken-images", "page-overflow")

# Everything is measured in the page, in one pass; sizes are CSS pixels.
_MEASURE_JS = r"""() => {
  const shown = (el) => {
    if (!el.getClientRects().length) return false;
    const style = getComputedStyle(el);
    return style.visibility !== 'hidden' && !el.closest('details:not([open]) > :not(summary)');
  };
  const text = (el, n) => (el ? el.textContent.replace(/\s+/g, ' ').trim().slice(0, n) : '');
  const boxOf = (table) => {
    for (let el = table; el && el !== document.body; el = el.parentElement) {
      const ox = getComputedStyle(el).overflowX;
      if (ox !== 'visible') return {el, ox};
    }
    return null;
  };
  const column = (el) => el.closest('article, [role=main], main, .bd-content') || document.body;
  const tables = Array.from(document.querySelectorAll('table')).filter(shown).map((t, i) => {
    const width = Math.round(t.getBoundingClientRect().width);
    const box = boxOf(t);
    let status = 'fits', container = column(t).getBoundingClientRect();
    let containerWidth = Math.round(container.width);
    if (box) {
      containerWidth = box.el.clientWidth;
      const full = box.el === t ? t.scrollWidth : width;
      if (full > containerWidth + 1)
        status = (box.ox === 'auto' || box.ox === 'scroll') ? 'scrolls' : 'clipped';
    } else {
      const r = t.getBoundingClientRect();
      if (r.right > container.right + 1 || r.left < container.left - 1) status = 'overflows';
    }
    return {index: i, label: text(t.querySelector('caption') || t.rows[0], 80), width,
            container_width: containerWidth, status, in_output: !!t.closest('.cell_output')};
  });
  const cells = Array.from(document.querySelectorAll('div.cell')).map((c, i) => {
    const input = c.querySelector('.cell_input');
    const state = !input ? 'removed' : shown(input) ? 'visible' : 'collapsed';
    const tags = Array.from(c.classList).filter(k => k.startsWith('tag_')).map(k => k.slice(4));
    return {index: i, input: state, tags, first_line: text(input, 80)};
  });
  const images = Array.from(document.querySelectorAll('.cell_output img')).map((img, i) => {
    const caption = img.closest('figure')?.querySelector('figcaption');
    return {index: i, src: img.getAttribute('src') || '', alt: img.getAttribute('alt') || '',
            caption: text(caption, 160), visible: shown(img),
            broken: !img.complete || img.naturalWidth === 0,
            width: Math.round(img.getBoundingClientRect().width)};
  });
  const textCode = Array.from(document.querySelectorAll('div.highlight'))
    .filter(el => !el.closest('div.cell') && shown(el)).length;
  const doc = document.documentElement;
  return {title: document.title, height: doc.scrollHeight, scroll_width: doc.scrollWidth,
          viewport_width: window.innerWidth, tables, cells, images, code_blocks_in_text: textCode,
          other_images: document.querySelectorAll('img').length - images.length};
}"""

_WAIT_JS = """async () => {
  await document.fonts.ready;
  await Promise.all(Array.from(document.images).filter(i => !i.complete)
    .map(i => new Promise(r => { i.onload = i.onerror = r; })));
}"""


def list_pages(html_dir: Path) -> list[Path]:
    """Every content page of a Sphinx HTML folder (not the index, search or static files)."""
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        parts = path.relative_to(html_dir).parts
        if path.stem in SKIPPED_PAGES or SKIPPED_DIRS.intersection(parts[:-1]):
            continue
        pages.append(path)
    return pages


def resolve_pages(html_dir: Path, names: list[str]) -> list[Path]:
    """HTML files for page names (``02-layers-cka``, ``02-layers-cka.html`` or a path
    relative to ``html_dir``); raises FileNotFoundError naming the missing ones."""
    if not html_dir.is_dir():
        raise FileNotFoundError(f"No HTML folder {html_dir} (build the book first: make book).")
    if not names:
        return list_pages(html_dir)
    found, missing = [], []
    for name in names:
        rel = name if name.endswith(".html") else f"{name}.html"
        hits = [html_dir / rel] if (html_dir / rel).is_file() else sorted(html_dir.rglob(rel))
        (found.append(hits[0]) if hits else missing.append(name))
    if missing:
        known = ", ".join(p.relative_to(html_dir).as_posix() for p in list_pages(html_dir))
        raise FileNotFoundError(f"No page {missing} in {html_dir}; pages: {known}")
    return found


def summarise(raw: dict) -> dict:
    """Counts and findings from the in-page measurements of one page."""
    tables, cells, images = raw["tables"], raw["cells"], raw["images"]
    wide = [t for t in tables if t["status"] != "fits"]
    shown = [i for i in images if i["visible"]]
    findings = {
        "wide-tables": len(wide),
        "visible-code": sum(c["input"] == "visible" for c in cells),
        "uncaptioned-figures": sum(not i["caption"] for i in shown),
        "broken-images": sum(i["broken"] for i in images),
        "page-overflow": int(raw["scroll_width"] > raw["viewport_width"] + 1),
    }
    return {
        "title": raw["title"],
        "height": raw["height"],
        "page_scrolls_horizontally": bool(findings["page-overflow"]),
        "tables": {"count": len(tables), "too_wide": len(wide), "items": tables},
        "code_cells": {
            "count": len(cells),
            "visible": findings["visible-code"],
            "collapsed": sum(c["input"] == "collapsed" for c in cells),
            "removed": sum(c["input"] == "removed" for c in cells),
            "items": cells,
            "code_blocks_in_text": raw["code_blocks_in_text"],
        },
        "figures": {
            "count": len(images),
            "visible": len(shown),
            "captioned": len(shown) - findings["uncaptioned-figures"],
            "uncaptioned": findings["uncaptioned-figures"],
            "broken": findings["broken-images"],
            "items": images,
            "other_images": raw["other_images"],
        },
        "findings": findings,
    }


def _settle(page, script: str, tries: int = 5):
    """Wait for fonts, images and layout, then run ``script``; a page that navigates away
    meanwhile (a redirect such as index.html) is waited for and measured where it lands."""
    from playwright.sync_api import Error

    for attempt in range(tries):
        try:
            page.wait_for_timeout(300)  # redirects fire and the theme's scripts settle
            page.wait_for_load_state("load")
            page.evaluate(_WAIT_JS)
            return page.evaluate(script)
        except Error as exc:
            if "navigat" not in str(exc) or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def shrink_png(path: Path, width: int | None = None, colors: int | None = None) -> None:
    """Rewrite a screenshot smaller: scaled to ``width`` pixels (never up) and reduced to a
    palette of ``colors`` colours, saved with PNG's best compression."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    if width and image.width > width:
        height = round(image.height * width / image.width)
        image = image.resize((width, height), Image.LANCZOS)
    if colors:
        image = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    image.save(path, optimize=True)


def shoot_page(
    context, path: Path, html_dir: Path, out_dir: Path, *, save_width=None, colors=None
) -> dict:
    """Open one page from disk, measure it and save its full-page screenshot."""
    page = context.new_page()
    blocked, errors = [], []
    page.on("pageerror", lambda exc: errors.append(str(exc)[:300]))
    page.on(
        "requestfailed",
        lambda req: errors.append(f"failed: {req.url}") if req.url.startswith("file:") else None,
    )

    def block(route):
        blocked.append(route.request.url)
        route.abort()

    page.route("http*://**/*", block)
    started = time.perf_counter()
    url = path.resolve().as_uri()
    try:
        page.goto(url, wait_until="load", timeout=60_000)
        record = summarise(_settle(page, _MEASURE_JS))
        landed = page.url
        rel = path.relative_to(html_dir)
        shot = out_dir / rel.with_suffix(".png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        if save_width or colors:
            shrink_png(shot, save_width, colors)
    finally:
        page.close()
    record.update(
        page=rel.with_suffix("").as_posix(),
        file=str(path),
        redirected_to=None if landed == url else landed,
        screenshot=str(shot),
        blocked_requests=sorted(set(blocked)),
        page_errors=errors,
        seconds=round(time.perf_counter() - started, 2),
    )
    return record


def screenshot_pages(
    pages: list[Path],
    html_dir: Path,
    out_dir: Path,
    *,
    width: int = 1280,
    height: int = 800,
    chromium: str = DEFAULT_CHROMIUM,
    save_width: int | None = None,
    colors: int | None = None,
) -> dict:
    """Screenshot and measure ``pages`` (files under ``html_dir``); return the report.
    ``save_width`` and ``colors`` shrink the saved PNGs (:func:`shrink_png`)."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"html_dir": str(html_dir), "width": width, "out": str(out_dir), "pages": []}
    with tempfile.TemporaryDirectory(prefix="screenshot-book-") as profile, sync_playwright() as pw:
        viewport = {"width": width, "height": height}
        context = launch_chromium(pw, chromium, profile, viewport=viewport)
        try:
            for path in pages:
                try:
                    report["pages"].append(
                        shoot_page(
                            context, path, html_dir, out_dir, save_width=save_width, colors=colors
                        )
                    )
                except Exception as exc:  # one broken page must not hide the others
                    name = path.relative_to(html_dir).with_suffix("").as_posix()
                    error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                    report["pages"].append({"page": name, "file": str(path), "error": error})
        finally:
            context.close()
    return report


def describe(report: dict) -> str:
    """The report as a few lines per page."""
    lines = []
    for p in report["pages"]:
        if "error" in p:
            lines.append(f"{p['page']}: ERROR {p['error']}")
            continue
        t, c, f = p["tables"], p["code_cells"], p["figures"]
        lines.append(f"{p['page']}: {report['width']} x {p['height']} px -> {p['screenshot']}")
        if p["redirected_to"]:
            lines.append(f"  redirects to {p['redirected_to']}")
        wide = ", ".join(
            f"#{x['index']} {x['label'][:40]!r} {x['width']} px in {x['container_width']} px "
            f"({x['status']})"
            for x in t["items"]
            if x["status"] != "fits"
        )
        lines.append(
            f"  tables: {t['count']}, too wide: {t['too_wide']}" + (f": {wide}" if wide else "")
        )
        lines.append(
            f"  code cells: {c['count']} (inputs visible {c['visible']}, collapsed "
            f"{c['collapsed']}, removed {c['removed']}); code blocks in text {c['code_blocks_in_text']}"
        )
        lines.append(
            f"  figures in outputs: {f['count']} (captioned {f['captioned']}, without caption "
            f"{f['uncaptioned']}, hidden {f['count'] - f['visible']}, broken {f['broken']})"
        )
        if p["page_scrolls_horizontally"]:
            lines.append("  the page scrolls horizontally")
        if p["blocked_requests"]:
            lines.append(f"  blocked network requests: {len(p['blocked_requests'])}")
        lines += [f"  page error: {e}" for e in p["page_errors"]]
    return "\n".join(lines)


def _checks(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown check(s) {unknown}; choose from {list(CHECKS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pages", nargs="*", help="page names (default: every page)")
    parser.add_argument("--html", type=Path, default=DEFAULT_HTML, help="the built HTML folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNGs and report.json")
    parser.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels")
    parser.add_argument("--height", type=int, default=800, help="viewport height (layout only)")
    parser.add_argument("--chromium", default=DEFAULT_CHROMIUM, help="the Chromium binary")
    parser.add_argument(
        "--save-width", type=int, default=None, help="scale saved PNGs down to this many pixels"
    )
    parser.add_argument(
        "--colors", type=int, default=None, help="save PNGs with a palette of this many colours"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    parser.add_argument(
        "--fail-on", type=_checks, default=[], help=f"comma-separated, from {', '.join(CHECKS)}"
    )
    parser.add_argument("--strict", action="store_true", help="--fail-on every check")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.width < 200 or args.height < 200:
        print("screenshot_book: --width and --height must be at least 200 px", file=sys.stderr)
        return 2
    try:
        pages = resolve_pages(args.html, args.pages)
    except FileNotFoundError as exc:
        print(f"screenshot_book: {exc}", file=sys.stderr)
        return 2
    reason = browser_missing(args.chromium)
    if reason:
        print(f"screenshot_book: cannot run: {reason}", file=sys.stderr)
        return 2
    report = screenshot_pages(
        pages,
        args.html,
        args.out,
        width=args.width,
        height=args.height,
        chromium=args.chromium,
        save_width=args.save_width,
        colors=args.colors,
    )
    fail_on = list(CHECKS) if args.strict else args.fail_on
    failed = {
        p["page"]: [k for k in fail_on if p["findings"][k]]
        for p in report["pages"]
        if "error" not in p and any(p["findings"][k] for k in fail_on)
    }
    report["failed"] = failed
    report["errors"] = {p["page"]: p["error"] for p in report["pages"] if "error" in p}
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1) if args.json else describe(report))
    if not args.json:
        print(f"report: {args.out / 'report.json'}")
        for page, checks in failed.items():
            print(f"FAILED {page}: {', '.join(checks)}")
    return 2 if report["errors"] else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
