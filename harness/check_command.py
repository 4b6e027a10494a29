"""`logquake check FILE...`: check recorded histories offline and print a verdict.

Reads each history (JSONL, Jepsen EDN, EDN lines or an old Jepsen log), picks
a checker (given with `--checker`, or detected from the ops: `process` /
`read-output` ops -> pipeline, `offset-commit` ops -> offsets, `send`/`poll` micro-ops -> queue, `append` -> list-append, `w`/`r` -> rw-register,
register/mutex/kv ops -> linearizable with an inferred model), prints a
summary per file and writes every result into `results.json` (or
`results.edn` with `--edn`) in `--out` (default: a new folder
`check-<UTC time>` in the current directory, so that a check never replaces
the results a run wrote; an `--out` that is a run's own folder is refused).

A queue history is judged under a delivery mode: `--delivery` when given,
else the one the run's `test.json` beside the history records (read with
`checkers.queue.delivery.delivery_of`, the same function the run used, with
the producers' acks it recorded), else
exactly-once, the strictest; the line before a file's verdict says which mode
was used and where it came from, and how to change it when it was assumed.

Exit codes: 0 all valid, 1 some history invalid, 2 some verdict unknown (and
none invalid; a history that cannot be read, however malformed, is unknown
with a sentence that names the file, line and column), 254 bad arguments
(argparse errors included: they name the flag and the value), 255 an internal
error of logquake, never taken for a verdict: one line on stderr names the
exception and the file its traceback was written to (`--verbose` prints the
traceback instead). With several files or a directory the code is the worst one
(invalid beats unknown beats valid). A directory is searched recursively: in a
store run directory only `history.jsonl` is checked; elsewhere every
`.jsonl`, `.edn`, `.log` and `.txt` file.

Checkers are imported lazily, inside the dispatch, so that a checker that is
missing or broken gives "checker X is not available: ..." for the files that
need it instead of breaking the command.

Memory: a JSONL history over `STREAM_BYTES` (64 MiB) is streamed: its ops stay in
the file and each pass reads them again. The queue, pipeline and offsets checkers keep at most `--max-witnesses` witnesses
(default 100) per anomaly, each with its ops; the counts stay exact, and
`stats.witnesses_omitted` (in results.json, and a line of the summary) says how
many were left out. A history full of anomalies then costs what a valid one
does, and its results.json stays small.

Thread-safety: a command-line entry point; single-threaded.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from checkers.core import MAX_WITNESSES, merge_valid, results_to_edn, run_checkers, to_jsonable
from checkers.faults import check_faults_landed, excuse_volatile_losses
from checkers.history import FORMATS, NEMESIS, History, HistoryError, detect_format
from checkers.queue import DELIVERY_MODES
from checkers.queue.delivery import delivery_of
from harness.cli import EXIT_CRASH

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNKNOWN = 2
EXIT_BAD_ARGUMENTS = 254
# A JSONL history larger than this is streamed (`History.stream_jsonl`): its ops stay in the file, read
# again on each pass, instead of some 20 bytes of memory per byte of file.
STREAM_BYTES = 64 * 2**20

CHECKERS = ("queue", "pipeline", "offsets", "list-append", "rw-register", "linearizable")
HISTORY_SUFFIXES = (".jsonl", ".edn", ".log", ".txt")
_EXIT_OF = {True: EXIT_VALID, False: EXIT_INVALID, "unknown": EXIT_UNKNOWN}


class BadArguments(Exception):
    """A command-line mistake: reported with exit code 254."""


class CheckerUnavailable(Exception):
    """A checker module that cannot be imported."""


class _Parser(argparse.ArgumentParser):
    # argparse exits with 2 on errors, which we reserve for "unknown".
    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadArguments(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="logquake check",
        description="Check recorded histories and print a verdict per file.",
        epilog="exit codes: 0 valid, 1 invalid, 2 unknown, 254 bad arguments, 255 internal error; several files: "
               "the worst",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="history files or directories")
    parser.add_argument("--checker", choices=CHECKERS, help="checker to run (default: detected from the ops)")
    parser.add_argument("--model", help="linearizability model, e.g. cas-register, register, mutex, kv")
    parser.add_argument("--initial", help="initial model state, as JSON or EDN (e.g. 0, nil, \"\")")
    parser.add_argument("--consistency-models", help="comma-separated Elle consistency models, e.g. serializable")
    parser.add_argument("--delivery", choices=DELIVERY_MODES, default=None,
                        help="queue delivery mode the history ran under (default: the run's test.json when "
                             "checking a stored run, else exactly-once, the strictest, and the output says so)")
    parser.add_argument("--semantics", help="linearizable checker semantics, e.g. knossos or porcupine-etcd")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="history format (default: auto)")
    parser.add_argument("--out", default=None,
                        help="directory for results.json / results.edn (default: a new folder check-<UTC time> in "
                             "the current directory; never a run's own folder)")
    parser.add_argument("--edn", action="store_true", help="write results.edn instead of results.json")
    parser.add_argument("--max-witnesses", type=_positive_int, default=MAX_WITNESSES, metavar="N",
                        help=f"witnesses kept per anomaly of the queue, pipeline and offsets checkers (default {MAX_WITNESSES}; "
                             "counts stay exact, and the results say how many were omitted)")
    parser.add_argument("--verbose", action="store_true",
                        help="on an internal error, print its traceback instead of writing it to a file")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer; expected e.g. 100")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args_list)
    except Exception as error:  # a bug of ours: never let it pass for a verdict, nor bury the verdict line in a trace
        import tempfile
        import traceback

        trace = traceback.format_exc()
        summary = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
        if "--verbose" in args_list:
            where = "its traceback follows"
            tail = trace
        else:
            with tempfile.NamedTemporaryFile("w", prefix="logquake-check-crash-", suffix=".txt", delete=False,
                                             encoding="utf-8", errors="backslashreplace") as out:
                out.write(trace)
            where = f"its traceback is in {out.name} (or run again with --verbose)"
            tail = ""
        sys.stderr.write(f"logquake check: internal error (a bug of logquake, not a verdict): {summary}; "
                         f"{where}\n{tail}")
        return EXIT_CRASH


def _main(args_list: list[str]) -> int:


    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
        options = {**_checker_options(args), "max_witnesses": args.max_witnesses}
        files = _expand_files(args.files)
        out_dir = _out_dir(args.out)
    except BadArguments as error:
        sys.stderr.write(f"{parser.format_usage()}logquake check: error: {error}\n")
        return EXIT_BAD_ARGUMENTS
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)

    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    results: dict[str, Any] = {}
    for path in files:
        try:
            result = check_file(path, args.checker, args.format, options)
        except BadArguments as error:
            sys.stderr.write(f"{parser.format_usage()}logquake check: error: {error}\n")
            return EXIT_BAD_ARGUMENTS
        results[path] = result
        if result.get("delivery_source"):
            console.print(f"{path}: judged as {result['delivery']} ({result['delivery_source']})", markup=False)
        _print_summary(console, path, result)
    valid = merge_valid(*(r["valid"] for r in results.values()))
    document = {"valid": valid, "files": results}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.edn:
            target = out_dir / "results.edn"
            target.write_text(results_to_edn(document), encoding="utf-8")
        else:
            target = out_dir / "results.json"
            with open(target, "w", encoding="utf-8") as out:  # streamed: no copy of the whole text in memory
                json.dump(to_jsonable(document), out, indent=1)
                out.write("\n")
    except OSError as error:
        sys.stderr.write(f"logquake check: error: --out {str(out_dir)!r}: cannot write results ({error.strerror})\n")
        return EXIT_BAD_ARGUMENTS
    verdict = {True: "valid", False: "INVALID", "unknown": "unknown"}[valid]
    console.print(f"{len(results)} histor{'y' if len(results) == 1 else 'ies'}: {verdict}; results in {target}")
    return _EXIT_OF[valid]


def _out_dir(out: str | None) -> Path:
    """Where results go: `out`, unless it is a stored run's folder; by default a new check-<UTC time> folder."""
    if out is not None:
        path = Path(out)
        if (path / "test.json").is_file() or (path / "history.jsonl").is_file():
            raise BadArguments(f"--out {out!r} is a run's folder: its results.json is the run's own verdict; "
                               "choose another folder (or leave --out out for a new one)")
        return path
    import datetime

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path, n = Path(f"check-{stamp}"), 1
    while path.exists():
        n += 1
        path = Path(f"check-{stamp}-{n}")
    return path


def _expand_files(paths: Sequence[str]) -> list[str]:
    files: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            files.append(raw)
        elif path.is_dir():
            found = []
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                if "history.jsonl" in filenames:
                    # a stored run: its history, not its node logs or its EDN copy
                    found.append(os.path.join(dirpath, "history.jsonl"))
                    dirnames[:] = []
                    continue
                for name in sorted(filenames):
                    if name.endswith(HISTORY_SUFFIXES) and not name.startswith("results."):
                        found.append(os.path.join(dirpath, name))
            if not found:
                raise BadArguments(
                    f"FILE {raw!r} is a directory without history files ({', '.join(HISTORY_SUFFIXES)})"
                )
            files.extend(found)
        else:
            raise BadArguments(f"FILE {raw!r} does not exist; expected a history file or a directory")
    return files


def _parse_initial(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    from checkers.history import read_edn

    try:
        forms = read_edn(text)
    except ValueError as error:
        raise BadArguments(f"--initial {text!r} is neither JSON nor EDN ({error})") from None
    if len(forms) != 1:
        raise BadArguments(f"--initial {text!r}: expected one value, got {len(forms)}")
    return forms[0][0]


def _checker_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"delivery": args.delivery}
    if args.initial is not None:
        options["initial"] = _parse_initial(args.initial)
    if args.model is not None:
        options["model"] = args.model
    if args.semantics is not None:
        options["semantics"] = args.semantics
    if args.consistency_models is not None:
        models = [m.strip() for m in args.consistency_models.split(",") if m.strip()]
        if not models:
            raise BadArguments(
                f"--consistency-models {args.consistency_models!r} names no model; expected e.g. serializable,snapshot-isolation"
            )
        options["consistency_models"] = models
    _validate_names(options)
    return options


def _validate_names(options: dict[str, Any]) -> None:
    """Check model and consistency-model names against the checkers that are
    installed (a missing checker is reported per file, not here)."""
    if "model" in options:
        try:
            models = _import("linearizable", "checkers.linearizable").MODELS
        except (CheckerUnavailable, AttributeError):
            models = None
        if models is not None and options["model"] not in models:
            raise BadArguments(f"--model {options['model']!r} is not known; expected one of {', '.join(sorted(models))}")
    if "semantics" in options:
        try:
            semantics = _import("linearizable", "checkers.linearizable").SEMANTICS
        except (CheckerUnavailable, AttributeError):
            semantics = None
        if semantics is not None and options["semantics"] not in semantics:
            raise BadArguments(
                f"--semantics {options['semantics']!r} is not known; expected one of {', '.join(semantics)}"
            )
    if "consistency_models" in options:
        try:
            validate = _import("list-append", "checkers.elle.consistency_models").validate_models
        except (CheckerUnavailable, AttributeError):
            validate = None
        if validate is not None:
            try:
                validate(options["consistency_models"])
            except ValueError as error:
                raise BadArguments(f"--consistency-models {','.join(options['consistency_models'])!r}: {error}") from None


def _import(checker: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise CheckerUnavailable(f"checker {checker} is not available: cannot import {module} ({error})") from None


def detect_checker(history: History) -> tuple[str | None, str | None]:
    """(checker, model) guessed from the ops; (None, None) when nothing fits."""
    micro_ops: set[str] = set()
    fs: set[str] = set()
    has_key = False
    for op in history:
        if op.process == NEMESIS:
            continue
        if op.f is not None:
            fs.add(op.f)
        if "key" in op.extra:
            has_key = True
        value = op.value
        if isinstance(value, list):
            for mop in value:
                if isinstance(mop, list) and mop and isinstance(mop[0], str):
                    micro_ops.add(mop[0])
    if fs & {"process", "read-output"}:
        return "pipeline", None
    if fs & {"offset-commit", "offset-fetch"}:
        return "offsets", None
    if micro_ops & {"send", "poll"}:
        return "queue", None
    if "append" in micro_ops:
        return "list-append", None
    if micro_ops & {"w", "r"}:
        return "rw-register", None
    if fs & {"acquire", "release"}:
        return "linearizable", "mutex"
    if has_key and fs & {"get", "put", "append"}:
        return "linearizable", "kv"
    if fs & {"cas"}:
        return "linearizable", "cas-register"
    if fs and fs <= {"read", "write"}:
        return "linearizable", "register"
    return None, None


def check_file(path: str, checker: str | None, format: str, options: dict[str, Any]) -> dict[str, Any]:
    """Load one history and run one checker; the result map has "checker" and "file" added."""
    try:
        format = detect_format(path) if format == "auto" else format
        if format == "jsonl" and os.path.getsize(path) > STREAM_BYTES:
            history = History.stream_jsonl(path)
        else:
            history = History.load(path, format)
    except HistoryError as error:
        return {"valid": "unknown", "checker": checker, "error": f"cannot read the history: {error}"}
    except OSError as error:
        return {"valid": "unknown", "checker": checker, "error": f"cannot read {path}: {error.strerror}"}
    model = options.get("model")
    source = "--delivery"
    if options.get("delivery") is None:
        stored = stored_delivery(path)
        if stored is not None:
            source = f"from {Path(path).parent / 'test.json'}"
            # the producers' acks as the run used them (an --acks run is judged as the run judged it)
            options = {**options, "acks": stored_acks(path)}
        else:
            source = ("assumed: no test.json beside the history, so the strictest mode; pass --delivery "
                      f"{'|'.join(DELIVERY_MODES)} to judge it under another")
        options = {**options, "delivery": stored or "exactly-once"}
    if checker is None:
        checker, detected_model = detect_checker(history)
        if checker is None:
            return {
                "valid": "unknown",
                "checker": None,
                "error": "cannot detect a checker from the ops; pass --checker "
                + "|".join(CHECKERS),
            }
        model = model or detected_model
    if checker == "linearizable" and model is None:
        _, model = detect_checker(history)
        if model is None:
            raise BadArguments(f"{path}: cannot infer a linearizability model from the ops; pass --model")
    try:
        run = _dispatch(checker, model, options)
    except CheckerUnavailable as error:
        return {"valid": "unknown", "checker": checker, "error": str(error)}
    if stored_volatile_storage(path):  # as the run judged it: losses across kills are not the system's fault
        judge = run
        run = lambda h: excuse_volatile_losses(dict(judge(h)), h)  # noqa: E731
    merged = run_checkers(history, {checker: run, "faults": check_faults_landed})
    result = dict(merged[checker])
    if merged["faults"].get("probed"):  # the nemesis measured its faults: the same rule as a run's verdict
        result["faults"] = merged["faults"]
        if merged["faults"]["valid"] != result["valid"] and result["valid"] is True:
            result["valid"] = merged["faults"]["valid"]
            result.setdefault("message", merged["faults"].get("message"))
    result["checker"] = checker
    if checker == "queue":
        result["delivery"] = options["delivery"]
        result["delivery_source"] = source
    if checker == "linearizable":
        result.setdefault("model", model)
    return result


def stored_volatile_storage(history_path: str) -> bool:
    """Whether the run beside the history tested a --system broker that declares volatile storage."""
    try:
        options = json.loads((Path(history_path).parent / "test.json").read_text(encoding="utf-8")).get("options", {})
        return (options.get("system_description") or {}).get("storage", {}).get("volatile") is True
    except (OSError, ValueError, AttributeError):
        return False


def stored_delivery(history_path: str) -> str | None:
    """The delivery (a name of `DELIVERY_MODES`) of the run whose test.json is beside the history, if any."""
    test_json = Path(history_path).parent / "test.json"
    try:
        options = json.loads(test_json.read_text(encoding="utf-8")).get("options", {})
        return delivery_of(options).name
    except (OSError, ValueError, AttributeError):
        return None


def stored_acks(history_path: str) -> str | None:
    """The producers' acks ("0", "1", "all") the run beside the history recorded, if any."""
    test_json = Path(history_path).parent / "test.json"
    try:
        acks = json.loads(test_json.read_text(encoding="utf-8")).get("workload", {}).get("acks")
    except (OSError, ValueError, AttributeError):
        return None
    return acks if acks in ("0", "1", "all") else None


def _dispatch(checker: str, model: str | None, options: dict[str, Any]) -> Any:
    if checker == "queue":
        from checkers.queue import check as queue_check

        return lambda h: queue_check(h, delivery=options["delivery"], acks=options.get("acks"),
                                     max_witnesses=options.get("max_witnesses"))
    if checker in ("pipeline", "offsets"):
        module = _import(checker, f"checkers.{checker}")
        return lambda h: module.check(h, max_witnesses=options.get("max_witnesses"))
    if checker in ("list-append", "rw-register"):
        module = _import(checker, "checkers.elle." + checker.replace("-", "_"))
        check = getattr(module, "check", None)
        if check is None:
            raise CheckerUnavailable(f"checker {checker} is not available: {module.__name__} has no check()")
        return lambda h: check(h, consistency_models=options.get("consistency_models"))
    if checker == "linearizable":
        module = _import(checker, "checkers.linearizable")
        extra = {"semantics": options["semantics"]} if "semantics" in options else {}
        return lambda h: module.check(h, model, initial=options.get("initial"), **extra)
    raise BadArguments(f"--checker {checker!r} is not known; expected one of {', '.join(CHECKERS)}")


def _print_summary(console: Any, path: str, result: dict[str, Any]) -> None:
    valid = result.get("valid")
    style, word = {True: ("green", "valid"), False: ("bold red", "INVALID")}.get(valid, ("yellow", "unknown"))
    checker = result.get("checker") or "no checker"
    extra = f", model {result['model']}" if result.get("model") else ""
    console.print(f"[bold]{path}[/bold]  ({checker}{extra}): [{style}]{word}[/{style}]", markup=True)
    if result.get("error"):
        first = str(result["error"]).strip().splitlines()
        console.print(f"  error: {first[-1] if first else ''}", markup=False)
    anomalies = result.get("anomalies")
    if isinstance(anomalies, dict):
        stats = result.get("stats") if isinstance(result.get("stats"), dict) else {}
        counts = stats.get("anomaly_counts", {})
        omitted = stats.get("witnesses_omitted") or {}
        for name, witnesses in anomalies.items():
            count = counts.get(name, len(witnesses) if isinstance(witnesses, list) else 1)
            left_out = (f" (results keep the first {len(witnesses)} witnesses; {omitted[name]} omitted)"
                        if omitted.get(name) and isinstance(witnesses, list) else "")
            console.print(f"  {name}: {count}{left_out}", markup=False)
            if isinstance(witnesses, list):
                for witness in witnesses[:2]:
                    if isinstance(witness, dict) and witness.get("explanation"):
                        console.print(f"    {witness['explanation']}", markup=False)
    allowed = result.get("allowed")
    if isinstance(allowed, dict) and allowed:
        shown = ", ".join(f"{name} ({len(w)})" for name, w in allowed.items())
        console.print(f"  allowed under {result.get('delivery', 'this mode')}: {shown}", markup=False)
    if valid is False and not isinstance(anomalies, dict):
        for key in ("anomaly_types", "not", "reason"):
            if result.get(key):
                console.print(f"  {key}: {result[key]}", markup=False)
        explanation = (result.get("counterexample") or {}).get("explanation") if isinstance(result.get("counterexample"), dict) else None
        if explanation:
            console.print(f"  {explanation}", markup=False)
