"""The report in a real browser: headless Chromium renders it, runs its script, and shows no script error.

Needs Debian's `chromium` package (CI installs it). The failing run is built
by running the real queue checker on a hand-written history with a lost
write. Chromium's `--dump-dom` prints the DOM after scripts ran: the report's
script marks `<body data-report-ready="yes">` as its last step, and the
error catcher in `<head>` writes any script error into `#js-errors`, so both
a crash and a silent failure show up in the dumped DOM.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reports import render_run
from tests.reports.run_dirs import _history_ops, lost_write_run, write_run
from tests.reports.test_serve import fetch, serving

pytestmark = pytest.mark.slow

BROWSER_TIMEOUT_S = 120


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "the browser test needs Chromium: apt-get install -y chromium (Debian package `chromium`)"
    return path


def _run_chromium(tmp_path: Path, url: str, *mode: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    args = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--enable-logging=stderr", "--v=0", *mode, url]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def _js_errors(dom: str) -> str:
    m = re.search(r'<pre id="js-errors"[^>]*>(.*?)</pre>', dom, re.S)
    assert m, "the dumped DOM has no #js-errors element"
    return m.group(1)


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]


def test_failing_run_report_renders_in_chromium_without_script_errors(tmp_path):
    run_dir = lost_write_run(tmp_path / "store", delivery="exactly-once")
    results = json.loads((run_dir / "results.json").read_text())
    report = render_run(run_dir)
    proc = _run_chromium(tmp_path, report.as_uri(), "--dump-dom")
    dom = proc.stdout
    assert 'data-report-ready="yes"' in dom, "the report's script did not finish"
    assert _js_errors(dom) == ""
    assert _console_errors(proc.stderr) == []
    assert '<header id="verdict" class="verdict invalid">' in dom and ">INVALID<" in dom
    assert 'id="promises"' in dom and 'id="anomaly-lost-write"' in dom
    assert html.escape(results["workload"]["anomalies"]["lost-write"][0]["explanation"]) in dom
    # The script gave every witness op link its tooltip: it ran over the anomaly section.
    assert 'title="show op 11 on the plots"' in dom and 'title="show op 19 on the plots"' in dom
    # The hostile value in the history stayed text: no script of its own ran.
    assert "<script>alert" not in dom

    shot = tmp_path / "report.png"
    _run_chromium(tmp_path, report.as_uri(), f"--screenshot={shot}", "--window-size=1200,3000")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a blank page is a few KB; the drawn report is much more


# Measures, after the report's own script ran, where the first broken promise, its first witness and the
# first fault named beside that witness are, and writes it into <body data-layout>.
MEASURE_JS = """<script>(function(){
  function box(el){if(!el){return null;}var b=el.getBoundingClientRect();
    return {top:b.top,bottom:b.bottom,left:b.left,right:b.right,text:el.textContent};}
  var promise=document.querySelector('#promises .promise.broken');
  var witness=promise&&promise.querySelector('.witness');
  document.body.setAttribute('data-layout',JSON.stringify({
    width:window.innerWidth,height:window.innerHeight,
    promise:box(promise&&promise.querySelector('h3')),
    anomaly:box(promise&&promise.querySelector('.anomaly h4')),
    explanation:box(witness&&witness.querySelector('.explanation')),
    fault:box(witness&&witness.querySelector('.faults-at .fault')),
    marks:document.querySelectorAll('svg.timeline a.anomaly-mark path.mark').length,
    markTitles:Array.prototype.map.call(document.querySelectorAll('svg.timeline a.anomaly-mark title'),
      function(t){return t.textContent;})}));
})();</script></body>"""


def test_the_first_screen_of_a_failing_report_shows_what_broke_and_under_which_fault(tmp_path):
    run_dir = lost_write_run(tmp_path / "store", delivery="exactly-once")
    results = json.loads((run_dir / "results.json").read_text())
    first_witness = results["workload"]["anomalies"]["lost-write"][0]
    page = render_run(run_dir).read_text()
    measured = tmp_path / "measured.html"
    measured.write_text(page.replace("</body>", MEASURE_JS))
    proc = _run_chromium(tmp_path, measured.as_uri(), "--dump-dom", "--window-size=1400,900")
    dom = proc.stdout
    assert _js_errors(dom) == "" and _console_errors(proc.stderr) == []
    layout = json.loads(html.unescape(re.search(r'data-layout="([^"]*)"', dom).group(1)))
    assert layout["width"] == 1400 and layout["height"] <= 900
    screen = layout["height"]
    assert layout["promise"]["text"] == "BROKEN nothing acknowledged is lost"
    assert layout["anomaly"]["text"].startswith("lost-write: 1 acknowledged message lost")
    assert layout["explanation"]["text"] == first_witness["explanation"]
    assert layout["fault"]["text"] == "kill n2 (the leader)"  # in effect when op 11 sent the lost message
    for part in ("promise", "anomaly", "explanation", "fault"):
        assert 0 <= layout[part]["top"] and layout[part]["bottom"] <= screen, (part, layout[part], screen)
        assert 0 <= layout[part]["left"] and layout[part]["right"] <= layout["width"], (part, layout[part])
    # the timeline marks every witness of the three anomalies; each mark names its anomaly
    assert layout["marks"] == 3
    assert sorted(t.split(",")[0] for t in layout["markTitles"]) == ["int-poll-skip", "lost-write", "unseen"]

    shot = tmp_path / "first-screen.png"
    _run_chromium(tmp_path, report_uri(run_dir), f"--screenshot={shot}", "--window-size=1400,900")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def report_uri(run_dir: Path) -> str:
    return (run_dir / "report.html").as_uri()


def test_a_script_error_would_be_caught(tmp_path):
    # The detector itself: the same report with a broken script must show the error in the DOM.
    run_dir = lost_write_run(tmp_path / "store")
    page = render_run(run_dir).read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(page.replace("</body>", "<script>noSuchFunction();</script></body>"))
    dom = _run_chromium(tmp_path, broken.as_uri(), "--dump-dom").stdout
    assert "noSuchFunction" in _js_errors(dom)


def test_served_report_renders_in_chromium(tmp_path):
    store = tmp_path / "store"
    run_dir = lost_write_run(store)
    with serving(store) as (_, port):
        assert fetch(port, "/")[0] == 200
        base = f"http://127.0.0.1:{port}"
        index_dom = _run_chromium(tmp_path, base + "/", "--dump-dom").stdout
        assert '<tr class="run invalid"' in index_dom
        # No report.html on disk: the server draws it on request.
        proc = _run_chromium(tmp_path, f"{base}/queue-lost/{run_dir.name}/report.html", "--dump-dom")
        assert 'data-report-ready="yes"' in proc.stdout
        assert _js_errors(proc.stdout) == ""
        assert 'id="anomaly-lost-write"' in proc.stdout


def test_clicking_a_witness_op_marks_it_on_the_plots(tmp_path):
    run_dir = lost_write_run(tmp_path / "store")
    page = render_run(run_dir).read_text()
    clicked = tmp_path / "clicked.html"
    clicked.write_text(page.replace(
        "</body>", "<script>document.querySelector('#anomaly-lost-write a.op-link').click();</script></body>"))
    dom = _run_chromium(tmp_path, clicked.as_uri(), "--dump-dom").stdout
    assert _js_errors(dom) == ""
    # Op 11 was invoked at 0.25 s: one dashed marker per time plot (timeline, latency, throughput).
    markers = re.findall(r'<line class="marker" x1="([\d.]+)"', dom)
    assert len(markers) == 3
    assert len(set(markers)) == 1
    # The witness names the completion (op 11); its bar starts at the invocation (op 10).
    assert re.findall(r'<rect class="op ok selected" data-index="(\d+)" data-done="(\d+)"', dom) == [("10", "11")]


def test_clicking_an_anomaly_mark_unfolds_and_shows_its_witness(tmp_path):
    # six witnesses of one lost write: the first three are open, witness 5 sits in a folded <details>
    ops = _history_ops()
    witness = {"key": 0, "value": 2, "op_maps": [ops[11], ops[19]]}
    results = {"valid": False, "workload": {
        "valid": False, "anomalies": {"lost-write": [dict(witness, explanation=f"witness {i}") for i in range(1, 7)]},
        "promises": [{"id": "lost", "promise": "nothing acknowledged is lost", "status": "broken",
                      "anomalies": {"lost-write": 6}, "allowed": {}, "reason": "broken by lost-write (6)"}]}}
    page = render_run(write_run(tmp_path / "store", "marks", ops, results)).read_text()
    clicked = tmp_path / "clicked-mark.html"
    clicked.write_text(page.replace("</body>", """<script>
      var mark=document.querySelector('svg.latency a.anomaly-mark[href="#w-workload-lost-write-5"] path.mark');
      mark.dispatchEvent(new MouseEvent('click',{bubbles:true,cancelable:true}));
      var w=document.getElementById('w-workload-lost-write-5'), b=w.getBoundingClientRect();
      document.body.setAttribute('data-shown',JSON.stringify({hash:location.hash,
        open:w.closest('details').open,top:b.top,height:window.innerHeight,visible:b.height>0}));
    </script></body>"""))
    dom = _run_chromium(tmp_path, clicked.as_uri(), "--dump-dom", "--window-size=1400,900").stdout
    assert _js_errors(dom) == ""
    shown = json.loads(html.unescape(re.search(r'data-shown="([^"]*)"', dom).group(1)))
    assert shown["hash"] == "#w-workload-lost-write-5" and shown["open"] is True and shown["visible"] is True
    assert -1 <= shown["top"] < shown["height"]  # scrolled to it (to a fraction of a pixel)
    # the mark's moment (op 11's invocation, 0.25 s) is marked on every time plot, and no op bar is selected
    assert len(re.findall(r'<line class="marker"', dom)) == 3
    assert not re.search(r'<rect class="op [a-z]+ selected"', dom)
