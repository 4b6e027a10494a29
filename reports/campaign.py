"""A campaign's outputs for people and CI servers: `junit.xml`, `index.html` and the trends page.

Each renders a summary (`harness.campaign.summarize`) or a trend analysis
(`harness.campaign.analyze_trends`) as it is: verdicts, flakiness and
regressions are decided there, never here.

JUnit XML: one `testsuite` per campaign, one `testcase` per run (named from its
cell and seed); INVALID is a `failure` whose message lists the anomaly types and
names the report, UNKNOWN (and a run the campaign did not get to) an `error`
with its reason; times in seconds. The layout is the one CI servers read
(Jenkins' JUnit plugin, GitLab, Surefire's report format); tests/data/junit.xsd
is a schema of it written for this project.

The pages are offline and self-contained (inline CSS, SVG and script), with
every string from the run escaped, like `report.html`.

Thread-safety: pure functions.
"""

from __future__ import annotations

import datetime
import os
import xml.etree.ElementTree as ET
from html import escape
from typing import Any

__all__ = ["campaign_index_html", "junit_xml", "trends_html"]

_COLOURS = {"valid": "#2e7d32", "invalid": "#c62828", "unknown": "#f9a825", "not run": "#9e9e9e",
            "running": "#1565c0", "interrupted": "#f9a825"}


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


def _testcase_name(job: dict[str, Any]) -> str:
    return f"{job['cell']} seed {job['seed']}"


def junit_xml(summary: dict[str, Any]) -> str:
    """The campaign as JUnit XML."""
    jobs = summary["jobs"]
    failures = sum(1 for j in jobs if j["verdict"] == "invalid")
    errors = sum(1 for j in jobs if j["verdict"] not in ("valid", "invalid"))
    total_time = sum(j["duration_s"] or 0.0 for j in jobs)
    stamp = summary["started_at"][:19]  # xs:dateTime without a zone, as the JUnit readers want it
    suites = ET.Element("testsuites", name=f"logquake campaign {summary['name']}", tests=str(len(jobs)),
                        failures=str(failures), errors=str(errors), time=f"{total_time:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=summary["name"], tests=str(len(jobs)), failures=str(failures),
                          errors=str(errors), skipped="0", time=f"{total_time:.3f}", timestamp=stamp,
                          hostname=os.uname().nodename)
    properties = ET.SubElement(suite, "properties")
    for key in ("version", "commit", "campaign_file", "directory"):
        ET.SubElement(properties, "property", name=key, value=str(summary.get(key) or ""))
    for job in jobs:
        case = ET.SubElement(suite, "testcase", classname=f"logquake.{summary['name']}", name=_testcase_name(job),
                             time=f"{job['duration_s'] or 0.0:.3f}")
        if job["verdict"] == "invalid":
            kinds = ", ".join(job["anomaly_types"]) or "an invalid verdict"
            failure = ET.SubElement(case, "failure", type="INVALID",
                                    message=f"INVALID: {kinds}; report: {job['report'] or 'none'}")
            failure.text = "\n".join(f"{name}: {count}" for name, count in sorted(job["anomalies"].items()))
        elif job["verdict"] != "valid":
            reason = job["reason"] or ("the campaign did not get to this run (budget or interruption)"
                                       if job["verdict"] == "not run" else "no verdict")
            error = ET.SubElement(case, "error", type="UNKNOWN", message=f"{job['verdict'].upper()}: {reason}")
            error.text = reason
        if job["run_dir"]:
            ET.SubElement(case, "system-out").text = f"run: {job['run_dir']}\nreport: {job['report']}\n"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px;margin:0 0 4px} .meta{color:#555;margin-bottom:10px}
table{border-collapse:collapse} th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.verdict{font-weight:600;color:#fff}
.totals span{display:inline-block;margin-right:10px;padding:2px 8px;border-radius:3px;color:#fff}
.filters{margin:8px 0} .filters label{margin-right:12px}
.js-errors{background:#fee;color:#900;padding:6px}
.strip{display:inline-flex;gap:2px} .strip a,.strip span{display:inline-block;width:12px;height:16px}
.badge{padding:1px 6px;border-radius:3px;color:#fff;font-size:12px}
"""
_ERRORS_JS = ("window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message));"
              "var p=document.getElementById('js-errors');if(p){p.hidden=false;p.textContent+=e.message+'\\n';}});")
_FILTER_JS = """
(function(){var sels=document.querySelectorAll('select[data-axis]');function apply(){
var rows=document.querySelectorAll('tr[data-row]');rows.forEach(function(r){var show=true;
sels.forEach(function(s){if(s.value&&r.getAttribute('data-'+s.dataset.axis)!==s.value){show=false;}});
r.hidden=!show;});}sels.forEach(function(s){s.addEventListener('change',apply);});
document.body.setAttribute('data-ready','yes');})();
"""


def _page(title: str, body: str, script: str = "") -> str:
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style><script>{_ERRORS_JS}</script></head><body>"
            "<pre id=\"js-errors\" class=\"js-errors\" hidden></pre>" + body
            + f"<p class=\"meta\">generated {_e(generated)} by logquake</p><script>{script}</script></body></html>\n")


def _attr(axis: str) -> str:
    return "data-" + "".join(c if c.isalnum() else "-" for c in axis.lower())


def campaign_index_html(summary: dict[str, Any]) -> str:
    """The campaign's matrix: one row per run, coloured by verdict, linking to the run's report."""
    jobs = summary["jobs"]
    axes: list[str] = []
    for job in jobs:
        for axis in job["params"]:
            if axis not in axes:
                axes.append(axis)
    values = {a: sorted({_value(j["params"].get(a)) for j in jobs}) for a in axes}
    shown_axes = [a for a in axes if len(values[a]) > 1] or axes
    directory = summary.get("directory") or "."
    totals = summary["totals"]
    head = (f"<h1>Campaign {_e(summary['name'])}</h1><p class=\"meta\">started {_e(summary['started_at'])} · "
            f"logquake {_e(summary.get('version') or '?')} · commit {_e((summary.get('commit') or '?')[:12])} · "
            f"{'finished' if summary.get('finished') else 'not finished'} · file {_e(summary['campaign_file'])}</p>"
            "<p class=\"totals\">" + "".join(
                f"<span style=\"background:{_COLOURS[k.replace('_', ' ')]}\" data-total=\"{k}\">{totals[k]} "
                f"{k.replace('_', ' ')}</span>" for k in ("valid", "invalid", "unknown", "not_run")) + "</p>")
    filters = "<div class=\"filters\">" + "".join(
        f"<label>{_e(a)} <select data-axis=\"{_e(_attr(a)[5:])}\"><option value=\"\">all</option>"
        + "".join(f"<option>{_e(v)}</option>" for v in values[a]) + "</select></label>" for a in shown_axes)
    filters += ("<label>verdict <select data-axis=\"verdict\"><option value=\"\">all</option>"
                + "".join(f"<option>{v}</option>" for v in ("valid", "invalid", "unknown", "not run")) + "</select></label></div>")
    rows = []
    for job in jobs:
        data = " ".join(f"{_attr(a)}=\"{_e(_value(job['params'].get(a)))}\"" for a in shown_axes)
        report = job.get("report")
        link = (f"<a href=\"{_e(os.path.relpath(report, directory))}\">report</a>" if report else "")
        anomalies = ", ".join(f"{_e(n)} ({c})" for n, c in sorted(job["anomalies"].items())) or (
            _e(job["reason"]) if job["verdict"] != "valid" else "")
        rows.append(
            f"<tr data-row {data} data-verdict=\"{_e(job['verdict'])}\">"
            + "".join(f"<td>{_e(_value(job['params'].get(a)))}</td>" for a in shown_axes)
            + f"<td>{_e(job['seed'])}</td><td class=\"verdict\" style=\"background:{_COLOURS.get(job['verdict'], '#777')}\">"
            f"{_e(job['verdict'].upper())}</td><td>{anomalies}</td>"
            f"<td>{_seconds(job['duration_s'])}</td><td>{link}</td></tr>")
    table = ("<table class=\"matrix\"><thead><tr>" + "".join(f"<th>{_e(a)}</th>" for a in shown_axes)
             + "<th>seed</th><th>verdict</th><th>anomalies</th><th>time</th><th>run</th></tr></thead><tbody>"
             + "".join(rows) + "</tbody></table>")
    kinds = sorted({n for j in jobs for n in j["anomalies"]})
    found = f"<p>Anomaly types found: {', '.join(_e(k) for k in kinds) or 'none'}.</p>"
    return _page(f"campaign {summary['name']}", head + found + filters + table, _FILTER_JS)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.0f} s"


def _value(v: Any) -> str:
    if isinstance(v, dict):
        return ";".join(f"{k}={x}" for k, x in sorted(v.items())) or "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _rate_svg(series: dict[str, list[tuple[int, float]]], nights: int, title: str) -> str:
    width, height, left, bottom = 640, 180, 40, 24
    palette = ["#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#4e342e", "#ad1457"]
    step = (width - left - 20) / max(1, nights - 1)
    parts = [f"<svg class=\"rate-plot\" width=\"{width}\" height=\"{height + 20 * len(series)}\" role=\"img\" "
             f"aria-label=\"{_e(title)}\"><text x=\"{left}\" y=\"12\">{_e(title)}</text>",
             f"<line x1=\"{left}\" y1=\"{height - bottom}\" x2=\"{width - 10}\" y2=\"{height - bottom}\" stroke=\"#999\"/>",
             f"<line x1=\"{left}\" y1=\"20\" x2=\"{left}\" y2=\"{height - bottom}\" stroke=\"#999\"/>",
             f"<text x=\"4\" y=\"24\">100%</text><text x=\"14\" y=\"{height - bottom}\">0%</text>"]
    for i in range(nights):
        parts.append(f"<text x=\"{left + i * step - 4:.1f}\" y=\"{height - 8}\">{i + 1}</text>")
    for n, (name, points) in enumerate(sorted(series.items())):
        colour = palette[n % len(palette)]
        coords = " ".join(f"{left + i * step:.1f},{20 + (1 - rate) * (height - bottom - 20):.1f}" for i, rate in points)
        parts.append(f"<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{coords}\"/>")
        for i, rate in points:
            parts.append(f"<circle cx=\"{left + i * step:.1f}\" cy=\"{20 + (1 - rate) * (height - bottom - 20):.1f}\" "
                         f"r=\"3\" fill=\"{colour}\"><title>{_e(name)}: night {i + 1}, {rate:.0%} invalid</title></circle>")
        parts.append(f"<text x=\"{left}\" y=\"{height + 14 + 20 * n}\" fill=\"{colour}\">— {_e(name)}</text>")
    return "".join(parts) + "</svg>"


def trends_html(analysis: dict[str, Any]) -> str:
    """The trends page of one campaign name: per cell, its verdicts night by night, and what changed."""
    nights = analysis["nights"]
    head = (f"<h1>Trends of campaign {_e(analysis['name'])}</h1><p class=\"meta\">{len(nights)} night(s): "
            + ", ".join(f"{i + 1}: {_e(n['started_at'][:16])} ({_e((n.get('commit') or '?')[:10])})"
                        for i, n in enumerate(nights)) + "</p>")
    rows = []
    for cell in analysis["cells"]:
        strip = "".join(
            (f"<a href=\"{_e(m['report'])}\" " if m.get("report") else "<span ")
            + f"title=\"night {m['night'] + 1}, seed {_e(m['seed'])}: {_e(m['verdict'])}\" data-verdict=\"{_e(m['verdict'])}\" "
            f"style=\"background:{_COLOURS.get(m['verdict'], '#777')}\">" + ("</a>" if m.get("report") else "</span>")
            for m in cell["marks"])
        status = cell["status"]
        colour = {"regressed": "#c62828", "flaky": "#f9a825", "valid": "#2e7d32", "invalid": "#c62828"}.get(status, "#777")
        detail = ""
        if cell.get("turned"):
            t = cell["turned"]
            detail = (f"went invalid on night {t['night'] + 1} ({_e(t['started_at'][:16])}): last valid on commit "
                      f"<code>{_e((t['last_valid_commit'] or '?')[:12])}</code>, invalid on commit "
                      f"<code>{_e((t['first_invalid_commit'] or '?')[:12])}</code>")
        elif cell.get("flaky_commits"):
            detail = "both verdicts on commit " + ", ".join(f"<code>{_e(c[:12])}</code>" for c in cell["flaky_commits"])
        rows.append(f"<tr data-cell=\"{_e(cell['id'])}\" data-status=\"{_e(status)}\"><td>{_e(cell['id'])}</td>"
                    f"<td><span class=\"strip\">{strip}</span></td><td><span class=\"badge\" "
                    f"style=\"background:{colour}\">{_e(status)}</span></td><td>{detail}</td></tr>")
    table = ("<table class=\"trends\"><thead><tr><th>cell</th><th>verdicts, night by night</th><th>status</th>"
             "<th>what changed</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    plots = (_rate_svg(analysis["rate_by_fault"], len(nights), "share of invalid runs per fault mix")
             + _rate_svg(analysis["rate_by_delivery"], len(nights), "share of invalid runs per delivery mode"))
    return _page(f"trends {analysis['name']}", head + table + "<h2>Anomaly rates</h2>" + plots,
                 "document.body.setAttribute('data-ready','yes');")


def scorecard_html(card: dict[str, Any]) -> str:
    """The planted-bug scorecard: per bug, the detection rate, anomalies and time to the first one; the control."""
    directory = card.get("directory") or "."

    def links(runs: list[dict[str, Any]]) -> str:
        return " ".join(
            (f"<a href=\"{_e(os.path.relpath(r['report'], directory))}\" " if r.get("report") else "<span ")
            + f"class=\"badge\" style=\"background:{_COLOURS.get(r['verdict'], '#777')}\" "
            f"title=\"seed {_e(r['seed'])}: {_e(r['verdict'])}\">{_e(r['verdict'][:1].upper())}"
            + ("</a>" if r.get("report") else "</span>") for r in runs)

    rows = []
    for row in card["bugs"]:
        rate = "no verdict" if row["rate"] is None else f"{row['detected']} of {row['decided']} ({row['rate']:.0%})"
        settings = row["settings"]
        setting = f"{settings['workload']}, {settings['delivery']}" + (", idempotent" if settings["idempotent"] else "")
        first = "" if row["median_first_anomaly_s"] is None else f"{row['median_first_anomaly_s']} s"
        rows.append(f"<tr data-bug=\"{_e(row['bug'])}\"><td><code>{_e(row['property'])}</code><br>{_e(row['what'])}</td>"
                    f"<td>{_e(setting)}</td><td class=\"rate\">{_e(rate)}"
                    + (f"<br>{row['unknown']} unknown" if row["unknown"] else "")
                    + f"</td><td>{_e(', '.join(row['anomaly_types']) or '—')}</td><td>{_e(first)}</td>"
                    f"<td>{links(row['runs_detail'])}</td></tr>")
    control = card["control"]
    alarms = control["false_alarms"]
    control_text = (f"<p class=\"control\" data-false-alarms=\"{len(alarms)}\">Control (the correct broker, same "
                    f"settings and seeds): {control['valid']} of {control['runs']} runs valid, {len(alarms)} false "
                    f"alarm(s), {control['unknown']} unknown. "
                    + links([{"seed": v["seed"], "verdict": v["verdict"], "report": v["report"]} for v in control["verdicts"]])
                    + "</p>")
    table = ("<table class=\"scorecard\"><thead><tr><th>planted bug</th><th>settings</th><th>detected</th>"
             "<th>anomalies found</th><th>first anomaly (median)</th><th>runs</th></tr></thead><tbody>"
             + "".join(rows) + "</tbody></table>")
    head = (f"<h1>Planted-bug scorecard</h1><p class=\"meta\">started {_e(card['started_at'])} · commit "
            f"{_e((card.get('commit') or '?')[:12])} · seeds {_e(', '.join(map(str, card['seeds'])))}</p>")
    return _page("logquake scorecard", head + table + control_text, "document.body.setAttribute('data-ready','yes');")
