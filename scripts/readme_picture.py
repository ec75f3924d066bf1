"""Remake docs/images/report.png, the README's picture: part of a real run's report, by headless chromium.

    .venv/bin/python scripts/readme_picture.py [--run runs/NAME]

Without --run it trains the picture's run first (`lenet train --recipe fast --epochs 3`, about a minute
on two cores) into a temporary directory. The page is the run's own report.html with some sections hidden
and the rest laid out in two columns; the PNG is quantised to 256 colours to keep the repository small.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "images" / "report.png"
CHROMIUM = os.environ.get("LENET_CHROMIUM", "/usr/bin/chromium")
SHOWN = "#results, #confusion-matrix, #feature-maps-block-1"  # the rest of the report is hidden
CSS = f"""
body > nav, body > section:not(:is({SHOWN})), #results .note {{ display: none; }}
body {{ max-width: 1240px; display: grid; grid-template-columns: 560px 640px; column-gap: 24px; margin: 1rem; }}
h1, body > p.note, #feature-maps-block-1 {{ grid-column: 1 / 3; margin: 0.2rem 0; }}
h2 {{ margin-top: 1rem; }}
"""


def train_run(directory: Path) -> Path:
    command = [sys.executable, "-m", "lenet.cli", "train", "--recipe", "fast", "--epochs", "3", "--out", "runs",
               "--name", "fast3"]  # fmt: skip
    subprocess.run(command, cwd=directory, check=True)
    return directory / "runs" / "fast3"


def screenshot(report: Path, out: Path) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1260, "height": 800}, device_scale_factor=1)
        page.goto(report.resolve().as_uri())
        page.add_style_tag(content=CSS)
        png = out.with_suffix(".full.png")
        page.screenshot(path=str(png), full_page=True)
        browser.close()
    # octree keeps the colour bar's blues smooth where median cut banded them
    Image.open(png).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
    png.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="an existing run directory (default: train one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # the report names its run by the path it was given, so the picture shows runs/fast3, not a temp path
        run = args.run or train_run(Path(tmp))
        screenshot(run / "report.html", OUT)
    print(f"{OUT.relative_to(REPO)}: {OUT.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
