"""The HTML report: one self-contained file whose figures are inline PNGs, checked by parsing it
(and by rendering it in headless chromium, which `make test` installs)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from data_fixtures import make_cifar10_python_dir
from PIL import Image

from resnet_cifar.cli import main
from resnet_cifar.engine.inference import data_for_run
from resnet_cifar.engine.rundir import pick_checkpoint, read_metrics
from resnet_cifar.errors import DataError


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_cifar10_python_dir(tmp_path_factory.mktemp("data"), n_train_per_class=6,
                                   n_test_per_class=3, seed=4, learnable=True)


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "r20"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), "--epochs", "2",
                 "--milestones", "1", "--batch-size", "16", "--eval-batch-size", "64",
                 "--threads", "1", "--device", "cpu"]) == 0
    return out


@pytest.fixture(scope="module")
def report(run) -> Path:
    """The report made with no data flags: the data path comes from the run's config.toml."""
    assert main(["report", str(run), "--device", "cpu", "--n", "9"]) == 0
    return run / "report.html"


class Page(HTMLParser):
    """Collects what the checks need: tags, their attributes, text by section heading."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.headings: list[str] = []
        self.pre: list[str] = []
        self.table_rows = 0
        self.text: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("h1", "h2", "h3", "pre"):
            self._in = tag
            (self.pre if tag == "pre" else self.headings).append("")

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        self.text.append(data)
        if self._in == "pre":
            self.pre[-1] += data
        elif self._in:
            self.headings[-1] += data


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text())
    page.close()
    return page


def test_report_holds_every_figure_inline_as_a_valid_png(report):
    page = parse(report)
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    alts = [attrs["alt"] for attrs in images]
    assert alts == ["Training curves", "Confusion matrix", "Per-class accuracy", "Predictions"]
    sizes = []
    for attrs in images:
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix)
        data = base64.b64decode(attrs["src"][len(prefix):], validate=True)
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG"
            sizes.append(image.size)
    assert sizes[0] == (1100, 420)  # the curves
    assert sizes[3] == (465, 600)  # 3 x 3 predictions with the figure title


def test_report_references_nothing_outside_itself(report):
    page = parse(report)
    text = report.read_text()
    assert "http:" not in text and "https:" not in text
    for tag, attrs in page.tags:
        for name in ("src", "href", "data", "action", "poster"):
            value = attrs.get(name) or ""
            assert not value.startswith(("//", "http", "file:")), (tag, name, value)
        assert tag not in ("link", "script", "iframe", "object"), tag


def test_report_shows_config_metrics_and_environment(report, run):
    page = parse(report)
    assert page.headings[0] == "resnet20"  # the run's name
    for heading in ("Key figures", "Training curves", "Test-set evaluation", "Confusion matrix",
                    "Per-class accuracy", "Predictions", "Metrics per epoch",
                    "Config (config.toml)", "Environment"):
        assert heading in page.headings, heading
    assert page.pre == [(run / "config.toml").read_text()]
    text = " ".join(page.text)
    rows = read_metrics(run)
    for row in rows:
        assert f"{row['train_loss']:.4f}" in text and f"{100 * row['val_acc']:.2f}%" in text
    assert torch.__version__ in text
    # evaluated on the test split with the final weights (no best.pt: validation was the test)
    assert "last.pt on the test split" in text
    assert "Validation is the test set" in text


def test_report_without_eval_and_elsewhere(run, tmp_path):
    out = tmp_path / "sub" / "r.html"
    assert main(["report", str(run), "--no-eval", "--out", str(out)]) == 0
    page = parse(out)
    assert [attrs["alt"] for tag, attrs in page.tags if tag == "img"] == ["Training curves"]


def test_report_of_a_missing_checkpoint_is_a_one_line_error(run, tmp_path, capsys):
    assert main(["report", str(run), "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "checkpoint not found" in err and len(err.splitlines()) == 1


def test_best_checkpoint_is_one_not_chosen_on_the_test_set(tmp_path):
    for name in ("last.pt", "best_on_test.pt"):
        (tmp_path / name).write_bytes(b"")
    assert pick_checkpoint(tmp_path, "best") == tmp_path / "last.pt"
    (tmp_path / "best.pt").write_bytes(b"")
    assert pick_checkpoint(tmp_path, "best") == tmp_path / "best.pt"
    assert pick_checkpoint(tmp_path, "last") == tmp_path / "last.pt"


def test_data_defaults_to_what_the_run_recorded(tmp_path):
    recorded = {"data": {"path": str(tmp_path), "val_split": 20, "normalize": "half",
                         "cache_dir": "/elsewhere", "augment": "none"}}
    data = data_for_run(recorded, {})
    assert (data.path, data.val_split, data.normalize) == (str(tmp_path), 20, "half")
    assert data.cache_dir is None  # the recording machine's cache is not ours
    assert data_for_run(recorded, {"path": "x", "val_split": 5}).val_split == 5
    gone = {"data": {"path": str(tmp_path / "moved"), "fingerprint": "sha256:ab"}}
    with pytest.raises(DataError, match=r"moved.*`data.path` \(--data\) PATH"):
        data_for_run(gone, {})  # never silently replaced by $RESNET_CIFAR_DATA or the cache
    elsewhere = data_for_run(gone, {"path": str(tmp_path)})  # pointed elsewhere: checked later
    assert (elsewhere.path, elsewhere.fingerprint) == (str(tmp_path), "sha256:ab")


# ---- rendering in a real browser ------------------------------------------------------------
# `make test` (and so CI, .ci/run) installs Debian's chromium first (`make browser`); with
# CI=true a missing chromium fails the test instead of skipping it, so a broken install is seen.
# Every request the page makes is answered "host not found", so nothing leaves the machine, and
# the page itself lists what it asked for (resource timing records failed requests too).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--host-resolver-rules=MAP * ~NOTFOUND"]
# Put first in a copy of the report: a policy that lets only inline styles, this script and
# data: images load, reporting anything else it blocks (a file beside the report, a CSS url());
# once the page has loaded, the script writes what the browser made of it into the DOM, which
# --dump-dom then prints.
RENDER_PROBE = """<meta http-equiv="Content-Security-Policy" content="default-src 'none';
  img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<script>
const blocked = [];
document.addEventListener('securitypolicyviolation', e => blocked.push(e.blockedURI));
window.addEventListener('load', () => {
  const out = document.createElement('pre');
  out.id = 'render-probe';
  out.textContent = JSON.stringify({
    images: [...document.images].map(i => ({alt: i.alt, src: i.src.slice(0, 40),
                                            complete: i.complete, width: i.naturalWidth,
                                            height: i.naturalHeight})),
    requests: performance.getEntriesByType('resource').map(e => e.name),
    blocked: blocked,
  });
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("chromium is not installed, and CI is set: `make browser` (a step of "
                        "`make test`) should have installed Debian's chromium package")
        pytest.skip("chromium is not installed (`make browser` installs it)")
    return path


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"  # new and empty
    profile.mkdir()
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          check=True, capture_output=True, text=True, timeout=120)


def browser_view(html: Path, tmp_path: Path) -> dict:
    """What headless chromium made of the page `html`: its images, every request it made and
    every load outside the page that the probe's policy blocked."""
    text = html.read_text()
    assert "<head>" in text
    probe = tmp_path / f"probe-{html.name}"
    probe.write_text(text.replace("<head>", "<head>" + RENDER_PROBE, 1))
    dom = run_chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom",
                       probe.resolve().as_uri()).stdout
    found = re.search(r'<pre id="render-probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe script never ran; chromium printed {dom[-300:]!r}"
    return json.loads(unescape(found.group(1)))


def assert_renders_self_contained(html: Path, tmp_path: Path) -> None:
    view = browser_view(html, tmp_path)
    assert view["requests"] == [], f"the page fetched {view['requests']}"
    assert view["blocked"] == [], f"the page refers to {view['blocked']}"
    assert [image["alt"] for image in view["images"]] == [
        "Training curves", "Confusion matrix", "Per-class accuracy", "Predictions"]
    for image in view["images"]:
        assert image["src"].startswith("data:image/png;base64,"), image
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image


def test_report_renders_in_headless_chromium(report, tmp_path):
    assert_renders_self_contained(report, tmp_path)
    shot = tmp_path / "shot.png"
    run_chromium(tmp_path, "--window-size=1200,3000", f"--screenshot={shot}",
                 report.resolve().as_uri())
    with Image.open(shot) as image:
        assert image.size == (1200, 3000)
        histogram = image.convert("L").histogram()
    inked = sum(histogram[:200]) / (1200 * 3000)  # pixels clearly darker than the background
    assert inked > 0.03, f"a blank page? only {inked:.1%} of it is not near-white"
