"""The planted-bug scorecard: how often the default fault mix catches each bug planted in our broker.

Every planted bug is a `logquake.debug.*` broker property, off by default.
`run_scorecard` runs each chosen bug `seeds` times with fresh random seeds
(recorded) and the default fault mix, under the settings that make the bug's
anomaly observable (`PLANTED_BUGS`: the delivery mode, the idempotent producer
or the workload), plus the correct broker as a control under the same
settings and on the same seeds. It is a campaign (`harness.campaign`): the
runs are ordinary runs in the store, resumable, with summary.json, junit.xml
and index.html; the scorecard adds `scorecard.json` and `scorecard.html` in
the campaign's directory.

Per bug: the detection rate (runs whose verdict is INVALID over runs with a
verdict; unknown runs are counted apart, never as detected or missed), the
anomaly types found, and the median time from the start of the run to the
first operation of the first anomaly's witnesses. For the control: every
verdict; any INVALID is a false alarm, a defect of the harness or the broker.

The settings of each bug are what a user would choose to look for that kind
of bug (idempotence bugs need `--idempotent`, transaction bugs
`--delivery exactly-once`, a durability bug the disk fault and a flush per
message); the harness is not told which bug is planted beyond that, and the
fault mix is the default one unless the bug names its own. A bug's control
runs with the same settings, extra broker properties included.

Thread-safety: a command-line entry point's logic.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.campaign import Campaign, Cell, run_campaign, summarize
from harness.spec import RunSpec

__all__ = ["PLANTED_BUGS", "PlantedBug", "run_scorecard", "scorecard_of"]


@dataclass(frozen=True)
class PlantedBug:
    prop: str  # the broker property that plants it
    what: str  # the mistake, in a few words
    expect: tuple[str, ...]  # the anomalies it should cause
    delivery: str = "at-least-once"
    idempotent: bool = False
    workload: str = "queue"
    nemesis: tuple[str, ...] | None = None  # None: the default fault mix
    # other broker properties the bug needs to show (its control runs with them too)
    broker_overrides: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return self.prop.removeprefix("logquake.debug.")


PLANTED_BUGS: tuple[PlantedBug, ...] = (
    PlantedBug("logquake.debug.ack.before.replication", "acks=all is answered after the leader's own append",
               ("lost-write", "unseen")),
    PlantedBug("logquake.debug.read.above.hwm", "consumers may read above the high watermark",
               ("read-above-watermark", "inconsistent-offsets", "nonmonotonic-poll", "poll-skip", "lost-write", "G1a")),
    PlantedBug("logquake.debug.skip.truncation", "followers keep a divergent tail after a leader change",
               ("inconsistent-offsets",)),
    PlantedBug("logquake.debug.skip.dedup", "the leader skips idempotent-producer deduplication", ("duplicate",),
               idempotent=True),
    PlantedBug("logquake.debug.read.uncommitted", "read_committed fetches are served as read_uncommitted",
               ("G1a",), delivery="exactly-once"),
    PlantedBug("logquake.debug.hwm.past.isr", "the high watermark follows the fastest ISR follower, not the slowest",
               ("lost-write", "unseen", "inconsistent-offsets", "nonmonotonic-poll", "poll-skip")),
    PlantedBug("logquake.debug.fenced.leader.acks", "acks=all waiting on a replaced leader is answered OK",
               ("lost-write", "unseen")),
    # only lost with every replica's unsynced tail: the disk fault's lose-unfsynced shape, and a flush per message
    PlantedBug("logquake.debug.skip.fsync", "a flush moves the recovery point without fsyncing",
               ("lost-write", "unseen"), nemesis=("disk",), broker_overrides=(("log.flush.interval.messages", "1"),)),
    PlantedBug("logquake.debug.index.off.by.one", "a fetch starts one offset index entry too late",
               ("lost-write", "unseen", "poll-skip", "inconsistent-offsets")),
    # only the disk fault's power cut tears writes, and no mix is measured for it in real runs yet (README)
    PlantedBug("logquake.debug.keep.torn.tail", "log recovery keeps a torn tail, and appends after it", ()),
    PlantedBug("logquake.debug.partial.commit.markers", "a transaction marker a partition refused is not sent again",
               ("missing-marker", "G1a", "lost-write", "unseen", "hanging-transaction"), delivery="exactly-once"),
    # a coordinator cut off from its followers (or killed while they lag) acknowledges commits that a new
    # coordinator never loads; the offsets workload ends each group after a few commits, so a lost tail shows
    PlantedBug("logquake.debug.commit.before.replication", "OffsetCommit answers before its record is replicated",
               ("lost-commit",), workload="offsets"),
    # a processor crashed after its offsets, or a deliberate abort followed by a rejoin: the group then starts
    # past inputs that no committed transaction copied
    PlantedBug("logquake.debug.aborted.offsets.visible", "an aborted transaction's input offsets are committed",
               ("lost-input",), delivery="exactly-once", workload="pipeline"),
    # a processor paused past its session (a zombie) commits after the group gave its partitions away
    PlantedBug("logquake.debug.unfenced.txn.offsets", "TxnOffsetCommit from a zombie (stale generation) is accepted",
               ("duplicate-output", "double-commit"), delivery="exactly-once", workload="pipeline"),
    # only harmful when a follower that missed a leader change holds records the new leader does not: it keeps them
    PlantedBug("logquake.debug.stale.epoch.fetch", "a Fetch naming an older leader epoch is served, not fenced",
               ("inconsistent-offsets", "lost-write", "unseen")),
    # a crashed processor's open transaction is not aborted when its restart takes over the transactional.id:
    # the new epoch's next commit on a partition commits the crashed one's records too; a partition it never
    # writes again keeps them open for good, which the final read-output finds (hanging-transaction)
    PlantedBug("logquake.debug.epoch.bump.unfenced", "an epoch bump does not abort (fence) the old epoch's transaction",
               ("duplicate-output", "hanging-transaction"), delivery="exactly-once", workload="pipeline"),
    # the workload aborts a tenth of its transactions: after a leader change their records count as committed
    PlantedBug("logquake.debug.abort.marker.lost", "a new leader replays commit markers but not abort markers",
               ("G1a", "lost-write", "unseen", "hanging-transaction"), delivery="exactly-once"),
    # a follower rejoining keeps its partitions while the leader gives them to another member
    PlantedBug("logquake.debug.double.assignment", "SyncGroup answers a follower with its previous assignment",
               ("duplicate-output", "double-commit"), delivery="exactly-once", workload="pipeline"),
)


def _settings_key(bug: PlantedBug) -> tuple:
    return bug.workload, bug.delivery, bug.idempotent, bug.nemesis, bug.broker_overrides


def _control_name(bug: PlantedBug, spec: RunSpec) -> str:
    """The control cell's name: the delivery, then whatever else differs from the default settings."""
    return "".join((spec.delivery_mode().name, "" if bug.workload == "queue" else f"-{bug.workload}",
                    "" if bug.nemesis is None else "-" + "+".join(bug.nemesis),
                    "".join(f"-{name}={value}" for name, value in bug.broker_overrides)))


def scorecard_campaign(bugs: list[PlantedBug], seeds: list[int], time_limit_s: float, backend: str,
                       store: str) -> Campaign:
    """The campaign behind a scorecard: one cell per bug, one control cell per distinct setting, same seeds."""
    cells = []
    controls: dict[tuple[str, str, bool], Cell] = {}
    for bug in bugs:
        settings = dict(workload=bug.workload, delivery=bug.delivery, idempotent=bug.idempotent, backend=backend,
                        time_limit_s=time_limit_s, store=store)
        if bug.nemesis is not None:
            settings["nemesis"] = bug.nemesis
        spec = RunSpec(**settings, broker_overrides={**dict(bug.broker_overrides), bug.prop: "true"}).resolve()
        cells.append(Cell(f"bug={bug.name}", {"bug": bug.name, "delivery": spec.delivery_mode().name}, spec))
        key = _settings_key(bug)
        if key not in controls:
            control = RunSpec(**settings, broker_overrides=dict(bug.broker_overrides)).resolve()
            controls[key] = Cell(f"control={_control_name(bug, control)}",
                                 {"bug": "none (control)", "delivery": control.delivery_mode().name}, control)
    return Campaign(name="scorecard", path=Path("(logquake scorecard)"), cells=cells + list(controls.values()), seeds=seeds,
                    repeat=len(seeds), budget_s=None, time_limit_s=time_limit_s, text="")


def _first_anomaly_s(run_dir: str | None) -> float | None:
    """Seconds from the start of the run to the first op of any anomaly's witnesses (None when unknown)."""
    if not run_dir:
        return None
    try:
        results = json.loads((Path(run_dir) / "results.json").read_text())
    except (OSError, ValueError):
        return None
    times = []
    for result in results.values():
        if not isinstance(result, dict):
            continue
        for witnesses in (result.get("anomalies") or {}).values():
            for witness in witnesses if isinstance(witnesses, list) else ():
                for op in witness.get("op_maps") or () if isinstance(witness, dict) else ():
                    if isinstance(op, dict) and isinstance(op.get("time"), int):
                        times.append(op["time"])
        op = result.get("op")
        if isinstance(op, dict) and isinstance(op.get("time"), int):
            times.append(op["time"])
    return min(times) / 1e9 if times else None


def scorecard_of(summary: dict[str, Any], bugs: list[PlantedBug]) -> dict[str, Any]:
    """scorecard.json from a scorecard campaign's summary."""
    rows = []
    for bug in bugs:
        jobs = [j for j in summary["jobs"] if j["cell"] == f"bug={bug.name}"]
        decided = [j for j in jobs if j["verdict"] in ("valid", "invalid")]
        caught = [j for j in decided if j["verdict"] == "invalid"]
        firsts = [t for t in (_first_anomaly_s(j["run_dir"]) for j in caught) if t is not None]
        rows.append({
            "bug": bug.name, "property": bug.prop, "what": bug.what, "expected": list(bug.expect),
            "settings": {"workload": bug.workload, "delivery": bug.delivery, "idempotent": bug.idempotent,
                         "nemesis": list(bug.nemesis) if bug.nemesis is not None else "default",
                         "broker_overrides": dict(bug.broker_overrides)},
            "runs": len(jobs), "decided": len(decided), "detected": len(caught),
            "unknown": sum(1 for j in jobs if j["verdict"] == "unknown"),
            "not_run": sum(1 for j in jobs if j["verdict"] not in ("valid", "invalid", "unknown")),
            "rate": (len(caught) / len(decided)) if decided else None,
            "anomaly_types": sorted({a for j in caught for a in j["anomaly_types"]}),
            "median_first_anomaly_s": round(statistics.median(firsts), 1) if firsts else None,
            "runs_detail": [{"seed": j["seed"], "verdict": j["verdict"], "anomaly_types": j["anomaly_types"],
                             "report": j["report"]} for j in jobs],
        })
    control_jobs = [j for j in summary["jobs"] if j["cell"].startswith("control=")]
    return {"started_at": summary["started_at"], "commit": summary.get("commit"), "version": summary.get("version"),
            "directory": summary["directory"], "seeds": sorted({j["seed"] for j in summary["jobs"]}), "bugs": rows,
            "control": {"runs": len(control_jobs),
                        "valid": sum(1 for j in control_jobs if j["verdict"] == "valid"),
                        "false_alarms": [{"cell": j["cell"], "seed": j["seed"], "anomaly_types": j["anomaly_types"],
                                          "report": j["report"]} for j in control_jobs if j["verdict"] == "invalid"],
                        "unknown": sum(1 for j in control_jobs if j["verdict"] not in ("valid", "invalid")),
                        "verdicts": [{"cell": j["cell"], "seed": j["seed"], "verdict": j["verdict"],
                                      "report": j["report"]} for j in control_jobs]}}


def run_scorecard(bug_names: list[str] | None, seeds: int, time_limit_s: float, backend: str, store: str,
                  parallel: int = 1, out: Callable[[str], None] = print) -> tuple[int, Path]:
    """Run the scorecard; return (exit status, its directory). Exit 1 when a control run is INVALID."""
    from reports.campaign import scorecard_html

    bugs = [b for b in PLANTED_BUGS if bug_names is None or b.name in bug_names or b.prop in bug_names]
    rng = random.Random()
    seed_list = [rng.randrange(1 << 31) for _ in range(seeds)]
    campaign = scorecard_campaign(bugs, seed_list, time_limit_s, backend, store)
    code, directory = run_campaign(campaign, store, parallel=parallel, out=out)
    card = scorecard_of(summarize(directory), bugs)
    card["bugs_requested"] = [b.name for b in bugs]
    (directory / "scorecard.json").write_text(json.dumps(card, indent=1) + "\n")
    (directory / "scorecard.html").write_text(scorecard_html(card))
    for row in card["bugs"]:
        rate = "no verdict" if row["rate"] is None else f"{row['detected']}/{row['decided']} ({row['rate']:.0%})"
        out(f"  {row['bug']:<24} detected {rate}; first anomaly after "
            f"{row['median_first_anomaly_s'] if row['median_first_anomaly_s'] is not None else '-'} s (median); "
            f"{', '.join(row['anomaly_types']) or 'no anomaly'}")
    control = card["control"]
    out(f"  control (correct broker): {control['valid']}/{control['runs']} valid, "
        f"{len(control['false_alarms'])} false alarm(s), {control['unknown']} unknown")
    out(f"scorecard: {directory / 'scorecard.html'}")
    if code == 130:
        return code, directory
    return (1 if control["false_alarms"] else 0), directory
