"""``daik jobs ...`` and ``daik batches ...``: the job service's API from the command line.

Every command takes ``--server URL`` (default ``DAIK_SERVER``, else http://127.0.0.1:8000) and ``--json``
(the API's JSON, for scripts; default: tables for people). The bearer token is ``DAIK_TOKEN``. Failures end
as one line on stderr and exit status 1: a problem+json answer as its title, detail and bad fields, a server
that cannot be reached naming its URL. httpx is imported inside the handlers, so ``daik`` itself starts
without it (the service extra).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from service.client import default_server

if TYPE_CHECKING:
    from service.client.http import ApiClient

    Actions = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["register"]

CLIENT_EXTRA = "pip install 'daik[service]'"
JOB_STATUSES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")
BATCH_VERBS = ("pause", "resume", "stop", "cancel", "rerun-failed")
WHAT = ("best.pt", "results.json", "metrics.jsonl", "plots", "onnx", "log", "all")
Handler = Callable[["ApiClient", argparse.Namespace], int]


# ------------------------------------------------------------------------------------------- plumbing
def _fail(message: str) -> SystemExit:
    return SystemExit(f"daik: error: {message}")


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[ApiClient]:
    try:
        from service.client.http import ApiClient, ClientError
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] in ("service", "daik_core", "worker"):
            raise
        raise _fail(
            f"`daik {args.command}` needs the service extra: {CLIENT_EXTRA} ({err.name} is missing)"
        ) from None
    try:
        with ApiClient(args.server, os.environ.get("DAIK_TOKEN"), timeout=args.timeout) as client:
            yield client
    except ClientError as err:
        raise _fail(str(err)) from None


def _run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        with _client(args) as client:
            return handler(client, args)

    return run


def _job(args: argparse.Namespace, tail: str = "") -> str:
    """``/jobs/{ID}{tail}``, the id escaped (an id is one path segment)."""
    return f"/jobs/{quote(args.id, safe='')}{tail}"


def _batch(args: argparse.Namespace, tail: str = "") -> str:
    return f"/batches/{quote(args.id, safe='')}{tail}"


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _when(value: str | None) -> str:
    if not value:
        return "-"
    try:
        return (
            dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        )
    except ValueError:
        return value


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _load_yaml(path: str) -> Any:
    import yaml

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise _fail(f"{path}: cannot read it ({err})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise _fail(f"{path}: not valid YAML{where}: {problem}") from None


def _job_spec(path: str, name: str | None, gpus: int | None) -> dict[str, Any]:
    """The ``POST /jobs`` body from a job spec file: the spec as written (paths are the server's: a
    registered dataset's name or a folder under its data root, a checkpoint under its artifact root, or
    ``teacher: {job: ID}``), without ``output`` (the service picks the job's folder)."""
    spec = _load_yaml(path)
    if not isinstance(spec, dict):
        raise _fail(f"{path}: a job spec is a mapping (kind, dataset, student, hparams, ...)")
    if spec.get("output") is not None:
        print(
            f"daik: note: {path}: output ({spec['output']}) is left out: the service puts each job in its "
            "own folder",
            file=sys.stderr,
        )
    spec.pop("output", None)
    if name is not None:
        spec["name"] = name
    if gpus is not None:
        resources = spec.get("resources")
        spec["resources"] = {**(resources if isinstance(resources, dict) else {}), "gpus": gpus}
    return spec


# ----------------------------------------------------------------------------------------------- jobs
def _progress(job: Mapping[str, Any]) -> str:
    return f"{job.get('epoch', 0)}/{job.get('total_epochs', 0)} {100 * float(job.get('progress') or 0):.0f}%"


def _job_rows(items: Sequence[Mapping[str, Any]]) -> str:
    return _table(
        [
            (
                j["id"],
                j["name"],
                j["kind"],
                j["status"],
                _progress(j),
                _num(j.get("final_map50")),
                _when(j.get("created_at")),
            )
            for j in items
        ],
        ("ID", "NAME", "KIND", "STATUS", "EPOCH", "mAP50", "CREATED"),
    )


def _job_detail(job: Mapping[str, Any]) -> str:
    spec = job.get("spec") or {}
    dataset = spec.get("dataset") or {}
    cancel_pending = job.get("cancel_requested") and job["status"] in ("queued", "running")
    fields: list[tuple[str, Any]] = [
        ("id", job["id"]),
        ("name", job["name"]),
        ("kind", job["kind"]),
        ("status", job["status"] + (" (cancel requested)" if cancel_pending else "")),
        ("progress", f"{_progress(job)} (step {job.get('step', 0)})"),
        (
            "attempt",
            f"{job.get('attempt', 0)} (restarts {job.get('restarts', 0)}/{job.get('max_restarts', 0)})",
        ),
        ("mAP50", _num(job.get("final_map50"))),
        ("mAP50:95", _num(job.get("final_map50_95"))),
        ("dataset", dataset.get("train", "-")),
        ("created", _when(job.get("created_at"))),
        ("started", _when(job.get("started_at"))),
        ("finished", _when(job.get("finished_at"))),
    ]
    if job.get("waiting"):
        fields.append(("waiting", job["waiting"]))
    if job.get("error"):
        fields.append(("error", f"{job['error']} ({job.get('failure_kind') or 'failed'})"))
    latest = job.get("latest_metrics") or {}
    if latest:
        fields.append(("latest", ", ".join(f"{k}={_num(v)}" for k, v in sorted(latest.items()))))
    width = max(len(k) for k, _ in fields)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in fields)


def _jobs_submit(client: ApiClient, args: argparse.Namespace) -> int:
    body = _job_spec(args.spec, args.name, args.gpus)
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    job = client.post("/jobs", body, headers=headers)
    if args.json:
        _print_json(job)
    else:
        print(f"submitted job {job['id']} ({job['name']}, {job['kind']}): {job['status']}")
    return 0


def _pages(
    client: ApiClient, path: str, params: dict[str, Any], *, every: bool
) -> tuple[list[dict[str, Any]], str | None]:
    """The items of a listing's first page, or of every page (``every``), and the cursor of the next one."""
    page = client.get(path, **params)
    items, cursor = list(page["items"]), page.get("next_cursor")
    while every and cursor:
        page = client.get(path, **params, cursor=cursor)
        items += page["items"]
        cursor = page.get("next_cursor")
    return items, cursor


def _jobs_ls(client: ApiClient, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {
        "status": args.status or None,
        "kind": args.kind,
        "name": args.name,
        "name_prefix": args.name_prefix,
        "limit": args.limit,
    }
    items, cursor = _pages(client, "/jobs", params, every=args.all)
    if args.json:
        _print_json({"items": items, "next_cursor": cursor})
    elif items:
        print(_job_rows(items))
        if cursor:
            print(f"(more: --all, or --limit above {args.limit})", file=sys.stderr)
    else:
        print("no jobs", file=sys.stderr)
    return 0


def _jobs_get(client: ApiClient, args: argparse.Namespace) -> int:
    job = client.get(_job(args))
    if args.json:
        _print_json(job)
    else:
        print(_job_detail(job))
    return 0


def _jobs_metrics(client: ApiClient, args: argparse.Namespace) -> int:
    data = client.get(_job(args, "/metrics"), keys=args.keys, max_points=args.max_points)
    if args.json:
        _print_json(data)
        return 0
    series: dict[str, list[dict[str, Any]]] = data.get("series") or {}
    if not series:
        print(f"job {args.id} has no metrics yet", file=sys.stderr)
    else:
        rows = []
        for key in sorted(series):
            points = series[key]
            values = [p["value"] for p in points if p.get("value") is not None]
            last = points[-1] if points else {}
            rows.append(
                (
                    key,
                    len(points),
                    last.get("epoch", "-"),
                    last.get("step", "-"),
                    _num(last.get("value")),
                    _num(min(values)) if values else "-",
                    _num(max(values)) if values else "-",
                )
            )
        print(_table(rows, ("KEY", "POINTS", "EPOCH", "STEP", "LAST", "MIN", "MAX")))
    per_class = data.get("per_class_ap")
    if per_class:
        ap50, ap = per_class.get("ap50") or {}, per_class.get("ap50_95") or {}
        print(f"\nper class, epoch {per_class['epoch']}:")
        ap_rows = [(c, _num(ap50.get(c)), _num(ap.get(c))) for c in ap50]
        ap_rows.append(("all", _num(per_class.get("map50")), _num(per_class.get("map50_95"))))
        print(_table(ap_rows, ("CLASS", "AP50", "AP50:95")))
    return 0


def _jobs_logs(client: ApiClient, args: argparse.Namespace) -> int:
    data = client.get(_job(args, "/logs"), tail=args.tail, attempt=args.attempt)
    if args.json:
        _print_json(data)
    elif data["lines"]:
        print("\n".join(data["lines"]))
    else:
        print(f"job {args.id} has no log yet", file=sys.stderr)
    return 0


def _jobs_cancel(client: ApiClient, args: argparse.Namespace) -> int:
    job = client.post(_job(args, "/cancel"), force=args.force or None)
    if args.json:
        _print_json(job)
    else:
        print(f"job {job['id']}: {job['status']}")
    return 0


def _jobs_retry(client: ApiClient, args: argparse.Namespace) -> int:
    job = client.post(_job(args, "/retry"), {"start": "scratch" if args.scratch else "checkpoint"})
    if args.json:
        _print_json(job)
    else:
        print(f"job {job['id']}: {job['status']} (attempt {job['attempt'] + 1} next)")
    return 0


def _jobs_files(client: ApiClient, args: argparse.Namespace) -> int:
    data = client.get(_job(args, "/files"))
    if args.json:
        _print_json(data)
    elif data["items"]:
        print(
            _table(
                [(f["path"], f["kind"], _size(f["size"]), _when(f["modified_at"])) for f in data["items"]],
                ("PATH", "KIND", "SIZE", "MODIFIED"),
            )
        )
    else:
        print(f"job {args.id} has no files yet", file=sys.stderr)
    return 0


def _latest_attempt(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The files of the latest attempt among ``files`` (a file of the run folder itself counts as the
    oldest)."""
    if not files:
        return []
    latest = max(-1 if f["attempt"] is None else f["attempt"] for f in files)
    return [f for f in files if (-1 if f["attempt"] is None else f["attempt"]) == latest]


def _pick(client: ApiClient, args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(URL path, local file) of what ``download`` fetches."""
    out_dir = Path(args.output)
    if args.what == "best.pt" and args.path is None:
        checkpoints = client.get(_job(args, "/checkpoints"))["items"]
        best = [c for c in checkpoints if c["is_best"]]
        if not best:
            raise _fail(f"job {args.id} has no best checkpoint yet")
        return [(best[-1]["download_url"], out_dir / "best.pt")]
    files: list[dict[str, Any]] = client.get(_job(args, "/files"))["items"]
    if args.path is not None:
        chosen = [f for f in files if f["path"] == args.path.strip("/")]
        if not chosen:
            raise _fail(f"job {args.id} has no file {args.path!r} (see `daik jobs files {args.id}`)")
    elif args.what == "all":
        return [(f["download_url"], out_dir / _relative(f["path"])) for f in files]
    else:
        kind = {
            "results.json": "results",
            "metrics.jsonl": "metrics",
            "plots": "plot",
            "onnx": "onnx",
            "log": "log",
        }[args.what]
        chosen = _latest_attempt([f for f in files if f["kind"] == kind])
        if args.what in ("results.json", "metrics.jsonl", "log"):
            name = "trainer.log" if args.what == "log" else args.what
            chosen = [f for f in chosen if f["path"].rsplit("/", 1)[-1] == name][:1] or chosen[:1]
        if not chosen:
            raise _fail(f"job {args.id} has no {args.what} (yet); its files: `daik jobs files {args.id}`")
    return [(f["download_url"], out_dir / _relative(f["path"]).name) for f in chosen]


def _relative(path: str) -> Path:
    """A path the server listed, kept under the output folder (no absolute path, no ``..``)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or "\\" in path:
        raise _fail(f"the server listed a file path that cannot be written safely: {path!r}")
    return Path(*parts)


def _jobs_download(client: ApiClient, args: argparse.Namespace) -> int:
    written = []
    for url, dest in _pick(client, args):
        try:
            size = client.download(url, dest, progress=not args.json)
        except OSError as err:
            raise _fail(f"cannot write {dest}: {err.strerror or err}") from None
        written.append({"path": str(dest), "source": url, "size": size})
        if not args.json:
            print(f"{dest} ({_size(size)})")
    if args.json:
        _print_json(written)
    return 0


# -------------------------------------------------------------------------------------------- batches
def _batch_rows(items: Sequence[Mapping[str, Any]]) -> str:
    return _table(
        [
            (
                b["id"],
                b["name"],
                b["status"],
                f"{sum(v for k, v in b['counts'].items() if k in ('succeeded', 'failed', 'cancelled'))}"
                f"/{b['jobs']}",
                f"{100 * float(b.get('progress') or 0):.0f}%",
                _when(b.get("created_at")),
            )
            for b in items
        ],
        ("ID", "NAME", "STATUS", "FINISHED", "PROGRESS", "CREATED"),
    )


def _batch_detail(batch: Mapping[str, Any]) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in batch["counts"].items() if v)
    lines = [
        f"id        {batch['id']}",
        f"name      {batch['name']}",
        f"status    {batch['status']}{' (done)' if batch.get('done') else ''}",
        f"progress  {100 * float(batch.get('progress') or 0):.0f}% of {batch['jobs']} jobs "
        f"({counts or 'none'})",
        f"grid      {', '.join(batch['grid'])}",
        f"seeds     {', '.join(str(s) for s in batch['seeds'])}",
        f"created   {_when(batch.get('created_at'))}",
    ]
    if batch.get("teacher_job_id"):
        lines.append(f"teacher   {batch['teacher_job_id']}")
    cells = batch.get("cells") or []
    if cells:
        lines.append("")
        lines.append(
            _table(
                [
                    (
                        c["config"],
                        c["seed"],
                        c["job_id"],
                        c["status"],
                        f"{100 * c['progress']:.0f}%",
                        _num(c.get("final_map50")),
                    )
                    for c in cells
                ],
                ("CONFIG", "SEED", "JOB", "STATUS", "PROGRESS", "mAP50"),
            )
        )
    return "\n".join(lines)


def _seeds(value: str) -> int | list[int]:
    try:
        if "," in value:
            return [int(v) for v in value.split(",") if v.strip()]
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: a seed count (3) or seeds (0,1,2)") from None


def _batch_body(args: argparse.Namespace) -> dict[str, Any]:
    """A batch file (``base:``, ``grid:``, ``seeds:``, ``name:``) or a job spec used as the base;
    ``--grid``, ``--seeds`` and ``--name`` override."""
    data = _load_yaml(args.spec)
    if not isinstance(data, dict):
        raise _fail(f"{args.spec}: a batch is a mapping (base, grid, seeds) or a job spec")
    if "base" in data:
        body = dict(data)
        if isinstance(body["base"], dict) and body["base"].get("output") is not None:
            body["base"] = {k: v for k, v in body["base"].items() if k != "output"}
    else:
        body = {"base": _job_spec(args.spec, None, None)}
    if args.grid is not None:
        grid_file = Path(args.grid)
        body["grid"] = _load_yaml(args.grid) if grid_file.suffix in (".yaml", ".yml", ".json") else args.grid
    if args.seeds is not None:
        body["seeds"] = args.seeds
    if args.name is not None:
        body["name"] = args.name
    return body


def _batches_submit(client: ApiClient, args: argparse.Namespace) -> int:
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    batch = client.post("/batches", _batch_body(args), headers=headers)
    if args.json:
        _print_json(batch)
    else:
        print(f"submitted batch {batch['id']} ({batch['name']}): {batch['jobs']} jobs, {batch['status']}")
    return 0


def _batches_ls(client: ApiClient, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {
        "status": args.status or None,
        "schedule_id": args.schedule,
        "limit": args.limit,
    }
    items, cursor = _pages(client, "/batches", params, every=args.all)
    if args.json:
        _print_json({"items": items, "next_cursor": cursor})
    elif items:
        print(_batch_rows(items))
    else:
        print("no batches", file=sys.stderr)
    return 0


def _batches_get(client: ApiClient, args: argparse.Namespace) -> int:
    batch = client.get(_batch(args))
    if args.json:
        _print_json(batch)
    else:
        print(_batch_detail(batch))
    return 0


def _batches_verb(client: ApiClient, args: argparse.Namespace) -> int:
    batch = client.post(_batch(args, f"/{args.batch_command}"))
    if args.json:
        _print_json(batch)
    else:
        print(f"batch {batch['id']}: {batch['status']}")
    return 0


def _batches_results(client: ApiClient, args: argparse.Namespace) -> int:
    if args.json or args.format == "json":
        _print_json(client.get(_batch(args, "/results"), format="json"))
    else:
        print(client.get_text(_batch(args, "/results"), format=args.format).rstrip("\n"))
    return 0


# ------------------------------------------------------------------------------------------- register
def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        default=None,
        help="the API's URL (default: DAIK_SERVER, else http://127.0.0.1:8000); the token is DAIK_TOKEN",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON (for scripts)")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    return common


def _with_server(handler: Handler) -> Callable[[argparse.Namespace], int]:
    run = _run(handler)

    def call(args: argparse.Namespace) -> int:
        if args.server is None:
            args.server = default_server()
        return run(args)

    return call


def register(sub: Actions) -> None:
    """``daik jobs ...`` and ``daik batches ...``: one function per group of subcommands below."""
    common = _common()

    p = sub.add_parser("jobs", help="jobs on a DAIK server: submit, ls, get, metrics, logs, download, ...")
    jobs = p.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    _add_jobs_submit(jobs, common)
    _add_jobs_ls(jobs, common)
    _add_jobs_reads(jobs, common)
    _add_jobs_verbs(jobs, common)
    _add_jobs_download(jobs, common)

    p = sub.add_parser("batches", help="ablation batches on a DAIK server: submit, ls, get, results, ...")
    batches = p.add_subparsers(dest="batch_command", required=True, metavar="ACTION")
    _add_batches_submit(batches, common)
    _add_batches_ls(batches, common)
    _add_batches_reads(batches, common)
    _add_batches_verbs(batches, common)


def _add_jobs_submit(jobs: Actions, common: argparse.ArgumentParser) -> None:
    """``daik jobs submit``."""
    q = jobs.add_parser("submit", parents=[common], help="submit a job spec (YAML)")
    q.add_argument("spec", metavar="SPEC.yaml", help="a job spec; its paths are the server's (see README)")
    q.add_argument("--name", default=None, help="the job's name (default: the spec's)")
    q.add_argument("--gpus", type=int, default=None, help="GPUs the job needs (resources.gpus)")
    q.add_argument("--idempotency-key", default=None, help="resubmitting with the same key makes no new job")
    q.set_defaults(handler=_with_server(_jobs_submit))


def _add_jobs_ls(jobs: Actions, common: argparse.ArgumentParser) -> None:
    """``daik jobs ls``."""
    q = jobs.add_parser("ls", parents=[common], help="list jobs, newest first")
    q.add_argument("--status", action="append", choices=JOB_STATUSES, help="repeat for several")
    q.add_argument("--kind", choices=("train", "distill"), default=None)
    q.add_argument("--name", default=None, help="exact name")
    q.add_argument("--name-prefix", default=None)
    q.add_argument("--limit", type=int, default=50, help="jobs per page (1..200, default 50)")
    q.add_argument("--all", action="store_true", help="every page")
    q.set_defaults(handler=_with_server(_jobs_ls))


def _add_jobs_reads(jobs: Actions, common: argparse.ArgumentParser) -> None:
    """``daik jobs get | files | metrics | logs``: one job's state, files, series and log."""
    for name, handler, text in (
        ("get", _jobs_get, "a job's status, progress and scores"),
        ("files", _jobs_files, "the files of a job's run folder"),
    ):
        q = jobs.add_parser(name, parents=[common], help=text)
        q.add_argument("id", metavar="ID")
        q.set_defaults(handler=_with_server(handler))

    q = jobs.add_parser("metrics", parents=[common], help="a job's metric series and per-class AP")
    q.add_argument("id", metavar="ID")
    q.add_argument("--keys", default=None, help="comma-separated keys (default all)")
    q.add_argument("--max-points", type=int, default=None, help="per series (first, last, evenly spaced)")
    q.set_defaults(handler=_with_server(_jobs_metrics))

    q = jobs.add_parser("logs", parents=[common], help="the end of a job's trainer log")
    q.add_argument("id", metavar="ID")
    q.add_argument("--tail", type=int, default=100, help="lines (default 100, at most 10000)")
    q.add_argument("--attempt", type=int, default=None, help="which attempt (default the latest)")
    q.set_defaults(handler=_with_server(_jobs_logs))


def _add_jobs_verbs(jobs: Actions, common: argparse.ArgumentParser) -> None:
    """``daik jobs cancel | retry``."""
    q = jobs.add_parser("cancel", parents=[common], help="cancel a job (running: stops with a checkpoint)")
    q.add_argument("id", metavar="ID")
    q.add_argument("--force", action="store_true", help="stop the trainer at once, without the grace period")
    q.set_defaults(handler=_with_server(_jobs_cancel))

    q = jobs.add_parser("retry", parents=[common], help="queue a failed or cancelled job again")
    q.add_argument("id", metavar="ID")
    q.add_argument("--scratch", action="store_true", help="start afresh (default: from its last checkpoint)")
    q.set_defaults(handler=_with_server(_jobs_retry))


def _add_jobs_download(jobs: Actions, common: argparse.ArgumentParser) -> None:
    """``daik jobs download``."""
    q = jobs.add_parser("download", parents=[common], help="download a job's weights, results, plots, ...")
    q.add_argument("id", metavar="ID")
    q.add_argument(
        "--what",
        choices=WHAT,
        default="best.pt",
        help="best.pt (default), results.json, metrics.jsonl, plots, onnx, log (the latest attempt's), or "
        "all (the whole run folder)",
    )
    q.add_argument("--path", default=None, help="one file by its path in `daik jobs files ID`")
    q.add_argument("-o", "--output", default=".", help="folder to write to (default: the current one)")
    q.set_defaults(handler=_with_server(_jobs_download))


def _add_batches_submit(batches: Actions, common: argparse.ArgumentParser) -> None:
    """``daik batches submit``."""
    q = batches.add_parser("submit", parents=[common], help="a grid x seeds of a base job spec (YAML)")
    q.add_argument(
        "spec",
        metavar="SPEC.yaml",
        help="a batch (base:, grid:, seeds:, name:) or a job spec used as the base",
    )
    q.add_argument("--grid", default=None, help="a named grid (daik, paper) or a YAML file of one")
    q.add_argument("--seeds", type=_seeds, default=None, help="a count (3) or a list (0,1,2)")
    q.add_argument("--name", default=None)
    q.add_argument("--idempotency-key", default=None)
    q.set_defaults(handler=_with_server(_batches_submit))


def _add_batches_ls(batches: Actions, common: argparse.ArgumentParser) -> None:
    """``daik batches ls``."""
    q = batches.add_parser("ls", parents=[common], help="list batches, newest first")
    q.add_argument(
        "--status",
        action="append",
        choices=("active", "paused", "stopped", "cancelled"),
        help="repeat for several",
    )
    q.add_argument("--schedule", default=None, help="only the batches of this schedule id")
    q.add_argument("--limit", type=int, default=50)
    q.add_argument("--all", action="store_true", help="every page")
    q.set_defaults(handler=_with_server(_batches_ls))


def _add_batches_reads(batches: Actions, common: argparse.ArgumentParser) -> None:
    """``daik batches get | results``."""
    q = batches.add_parser("get", parents=[common], help="a batch and each (configuration, seed)'s job")
    q.add_argument("id", metavar="ID")
    q.set_defaults(handler=_with_server(_batches_get))

    q = batches.add_parser("results", parents=[common], help="the batch's ablation table")
    q.add_argument("id", metavar="ID")
    q.add_argument("--format", choices=("md", "csv", "json"), default="md", help="default md")
    q.set_defaults(handler=_with_server(_batches_results))


def _add_batches_verbs(batches: Actions, common: argparse.ArgumentParser) -> None:
    """``daik batches pause | resume | stop | cancel | rerun-failed``."""
    for verb in BATCH_VERBS:
        q = batches.add_parser(verb, parents=[common], help=f"{verb} the batch")
        q.add_argument("id", metavar="ID")
        q.set_defaults(handler=_with_server(_batches_verb))
