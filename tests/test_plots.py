"""`dvc plots show` draws every plot offline: the page it writes (from the template .dvc/config
names) carries Vega itself, and headless Chromium with every network request refused finds
each plot drawn with its marks (bars for the tables, lines for the curves)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# what each plot must show (dvc.yaml's plots): rect marks for bars, line marks for curves
MARKS = {"top_nouns": "rect", "turn_lengths": "rect", "loss": "line", "learning_rate": "line"}
# the data marks of every plot on the page, per plot <div> (Vega's SVG: g.mark-TYPE.role-mark)
COUNT_MARKS = """
return Array.from(document.querySelectorAll('body > div[id]')).map(div => {
  const count = type => Array.from(div.querySelectorAll(`g.mark-${type}.role-mark > path`))
    .filter(p => (p.getAttribute('d') || '').length > 4).length;
  const title = div.querySelector('g.role-title text');
  return {title: title ? title.textContent : '', svg: !!div.querySelector('svg'),
          rect: count('rect'), line: count('line')};
});
"""


def chromium_or_skip():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} missing: .ci/run installs chromium-driver")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    pytest.importorskip("selenium")


def open_offline(page: Path, profile: Path):
    """Headless Chromium as the machine's probe starts it, plus a proxy that refuses every
    connection: a page that needs the network draws nothing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.get(page.as_uri())
    return driver


def test_dvc_plots_show_draws_every_plot_offline(tmp_path):
    chromium_or_skip()
    template = ROOT / ".dvc" / "plots" / "offline.html"
    assert template.is_file(), "make setup writes the offline page template"
    dvc = str(Path(sys.executable).with_name("dvc"))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    shown = subprocess.run(
        [dvc, "plots", "show", "-o", str(tmp_path / "plots")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr
    page = tmp_path / "plots" / "index.html"
    html = page.read_text(encoding="utf-8")
    assert "<script src=" not in html and "cdn.jsdelivr" not in html
    plots = [next(iter(p)) for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]]
    assert sorted(plots) == sorted(MARKS)

    from selenium.webdriver.support.ui import WebDriverWait

    driver = open_offline(page, tmp_path / "profile")
    try:
        WebDriverWait(driver, 60).until(
            lambda d: (
                len(d.execute_script(COUNT_MARKS)) == len(plots)
                and all(p["svg"] for p in d.execute_script(COUNT_MARKS))
            )
        )
        drawn = driver.execute_script(COUNT_MARKS)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)
    assert not errors, errors
    for plot, name in zip(drawn, plots):
        assert plot[MARKS[name]] > 0, f"{name} ({plot['title']}) has no {MARKS[name]} marks: {plot}"
    # the turn-length table: one bar per bucket and role (the buckets are categories)
    with (ROOT / "metrics/plots/turn_lengths.csv").open(encoding="utf-8") as table:
        rows = list(csv.DictReader(table))
    assert drawn[plots.index("turn_lengths")]["rect"] == 2 * len(rows)
