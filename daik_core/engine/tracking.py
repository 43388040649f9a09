"""Experiment tracking: MLflow and TensorBoard as trainer callbacks (:mod:`daik_core.engine.callbacks`).

Both are optional extras and off unless configured; the trainer adds them itself (rank 0 only) from the spec
and the environment (:func:`tracking_callbacks`), so ``daik train``, the service's jobs, ``daik ablate`` and
the Python API report the same way.

MLflow (``pip install 'daik[mlflow]'``), on when ``hparams.mlflow`` or the environment's
``DAIK_MLFLOW_TRACKING_URI`` names a tracking URI (the spec's wins). One MLflow run per trainer run, in the
experiment ``DAIK_MLFLOW_EXPERIMENT`` (default ``daik``), named after the spec, with:

* params: the resolved job spec flattened to dotted keys (``hparams.epochs`` -> ``"2"``), values as
  strings, lists as JSON, cut to MLflow's length limit;
* tags: ``daik.job_id`` (the service's job id, ``DAIK_JOB_ID``, else the spec's name), ``daik.kind``,
  ``daik.output_dir``, and for a run of a batch ``mlflow.parentRunId`` (the batch's parent run, so MLflow
  shows it nested) with ``daik.batch_id``;
* metrics: each line of ``metrics.jsonl`` at ``step = epoch`` (``loss``, ``loss_<term>``, ``lr``,
  ``images_per_s``, ``epoch_time_s``, ``map50``, ``map50_95``, ``ap50/<class>`` ...), and the batch's loss
  terms and learning rate every ``step_interval`` optimiser steps as ``step/<name>`` at ``step = the global
  step`` (sent with the epoch's metrics, or after ``flush_interval`` seconds within a long epoch);
* artifacts, when the run completes: ``results.json``, ``spec.yaml``, ``metrics.jsonl``, the plots of the run
  folder (``*.png``, ``*.jpg``, ``gallery.json``) under ``plots/``, and ``weights/best.pt``.

A resumed run (``--resume``, or a service job's next attempt) continues the MLflow run of the run it resumes
(the run id is kept in ``<output>/mlflow.json``). A stopped run ends ``KILLED``, a failed one ``FAILED``.

Batches: a batch of the service (``DAIK_BATCH_ID``, set by the worker) or one ``daik ablate`` is a parent
run (tag ``daik.role = batch``) found or created by its key, and each run of it a child run. MLflow failures
(a server that is down, a full disk) are warnings (:class:`TrackingWarning`): training never fails for them,
and after :data:`MAX_FAILURES` failed calls in a row the callback stops trying. Unless the environment says
otherwise, MLflow's HTTP client is told to retry twice with a 30 s timeout (``MLFLOW_HTTP_REQUEST_*``), so
a dead server costs seconds, not minutes.

TensorBoard (``pip install 'daik[tensorboard]'``), on when ``hparams.tensorboard`` is true or the environment
has ``DAIK_TENSORBOARD=1``: event files in ``<output>/tensorboard`` with the same scalar names (epoch
metrics at the epoch, ``step/...`` at the global step); ``tensorboard --logdir runs`` shows them.

A configured tracker whose extra is not installed is an error before training starts, naming the extra.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from daik_core.engine.callbacks import Callback, TrainInfo
from daik_core.errors import DaikError

if TYPE_CHECKING:
    from daik_core.config import JobSpec

__all__ = [
    "BATCH_ID_ENV",
    "BATCH_NAME_ENV",
    "JOB_ID_ENV",
    "MLFLOW_EXPERIMENT_ENV",
    "MLFLOW_URI_ENV",
    "TENSORBOARD_ENV",
    "MlflowBatch",
    "MlflowCallback",
    "TensorBoardCallback",
    "TrackingWarning",
    "check_tracking",
    "flatten_params",
    "mlflow_uri",
    "tensorboard_enabled",
    "tracking_callbacks",
]

MLFLOW_URI_ENV = "DAIK_MLFLOW_TRACKING_URI"
MLFLOW_EXPERIMENT_ENV = "DAIK_MLFLOW_EXPERIMENT"
TENSORBOARD_ENV = "DAIK_TENSORBOARD"
#: set by the service's worker for the trainer of a job: the job's id, its attempt, and its batch (if any)
JOB_ID_ENV = "DAIK_JOB_ID"
JOB_ATTEMPT_ENV = "DAIK_JOB_ATTEMPT"
BATCH_ID_ENV = "DAIK_BATCH_ID"
BATCH_NAME_ENV = "DAIK_BATCH_NAME"
BATCH_CONFIG_ENV = "DAIK_BATCH_CONFIG"

DEFAULT_EXPERIMENT = "daik"
RUN_FILE = "mlflow.json"  # <output>/mlflow.json: the MLflow run of this run folder, for a resume
MAX_FAILURES = 3  # failed MLflow calls in a row before the callback gives up for the run
PARAM_VALUE_LIMIT = 6000  # MLflow's limit on a param value (mlflow.utils.validation); read from MLflow
PARAMS_PER_CALL = 100  # MLflow's limits of one log_batch call
METRICS_PER_CALL = 1000
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
_TRUE = {"1", "true", "yes", "on"}
_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. :/]")  # what MLflow accepts in a metric name

T = TypeVar("T")


class TrackingWarning(UserWarning):
    """A tracking call failed (server down, disk full): the run goes on, reported a little less."""


def _extra_error(extra: str, what: str) -> DaikError:
    return DaikError(f"{what} needs the {extra} extra: pip install 'daik[{extra}]'")


# ------------------------------------------------------------------------------------------ settings
def mlflow_uri(spec: JobSpec, environ: Mapping[str, str] | None = None) -> str | None:
    """The tracking URI the run logs to: ``hparams.mlflow``, else ``DAIK_MLFLOW_TRACKING_URI``, else
    ``None`` (no MLflow)."""
    env = os.environ if environ is None else environ
    uri = spec.hparams.mlflow or env.get(MLFLOW_URI_ENV, "").strip()
    return uri or None


def tensorboard_enabled(spec: JobSpec, environ: Mapping[str, str] | None = None) -> bool:
    """``hparams.tensorboard``, or ``DAIK_TENSORBOARD`` set to 1 / true / yes / on."""
    env = os.environ if environ is None else environ
    return spec.hparams.tensorboard or env.get(TENSORBOARD_ENV, "").strip().lower() in _TRUE


def check_tracking(spec: JobSpec, environ: Mapping[str, str] | None = None) -> None:
    """Raise a :class:`~daik_core.errors.DaikError` naming the extra to install when a configured tracker's
    package is missing (cheap: nothing is imported)."""
    if mlflow_uri(spec, environ) is not None and importlib.util.find_spec("mlflow") is None:
        raise _extra_error("mlflow", f"experiment tracking with MLflow ({_uri_source(spec)})")
    if tensorboard_enabled(spec, environ) and importlib.util.find_spec("tensorboard") is None:
        where = "hparams.tensorboard" if spec.hparams.tensorboard else f"{TENSORBOARD_ENV}"
        raise _extra_error("tensorboard", f"TensorBoard logging ({where})")


def _uri_source(spec: JobSpec) -> str:
    return "hparams.mlflow" if spec.hparams.mlflow else MLFLOW_URI_ENV


def tracking_callbacks(
    spec: JobSpec, given: Iterable[Callback] = (), environ: Mapping[str, str] | None = None
) -> list[Callback]:
    """The tracking callbacks the spec and the environment ask for, less those of a kind already in
    ``given`` (a caller that configures its own, as ``daik ablate`` does for its child runs)."""
    check_tracking(spec, environ)
    env = os.environ if environ is None else environ
    have = {type(cb) for cb in given}
    out: list[Callback] = []
    uri = mlflow_uri(spec, env)
    if uri is not None and MlflowCallback not in have:
        out.append(
            MlflowCallback(
                uri,
                spec,
                job_id=env.get(JOB_ID_ENV) or None,
                batch_id=env.get(BATCH_ID_ENV) or None,
                batch_name=env.get(BATCH_NAME_ENV) or None,
                tags={
                    k: v
                    for k, v in (
                        ("daik.attempt", env.get(JOB_ATTEMPT_ENV)),
                        ("daik.batch_config", env.get(BATCH_CONFIG_ENV)),
                    )
                    if v
                },
            )
        )
    if tensorboard_enabled(spec, env) and TensorBoardCallback not in have:
        out.append(TensorBoardCallback())
    return out


# ------------------------------------------------------------------------------------------ params
def flatten_params(
    data: Mapping[str, Any], prefix: str = "", limit: int = PARAM_VALUE_LIMIT
) -> dict[str, str]:
    """A nested mapping as MLflow params: dotted keys, values as strings (lists / tuples as JSON, ``None`` as
    ``"None"``), each cut to ``limit`` characters (the last three then ``...``)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, f"{name}.", limit))
            continue
        if isinstance(value, Mapping | list | tuple):
            text = json.dumps(value, separators=(",", ":"), default=str)
        else:
            text = str(value)
        if len(text) > limit:
            text = text[: max(limit - 3, 0)] + "..."
        out[name] = text
    return out


def _metric_name(name: str) -> str:
    return _KEY_BAD.sub("_", name)


def epoch_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a ``metrics.jsonl`` line to plot: every finite float / int but the counters
    (``epoch``, ``step``) and flags, per-class dicts as ``ap50/<class>``."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key in ("epoch", "step", "is_best"):
            continue
        if isinstance(value, Mapping):
            for cls, v in value.items():
                if _finite(v):
                    out[_metric_name(f"{key}/{cls}")] = float(v)
        elif _finite(value):
            out[_metric_name(key)] = float(value)
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


# ------------------------------------------------------------------------------------------ mlflow
def _mlflow_client(uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise _extra_error("mlflow", "experiment tracking with MLflow") from None
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    return MlflowClient(tracking_uri=uri)


def _param_limit() -> int:
    try:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        return int(MAX_PARAM_VAL_LENGTH)
    except (ImportError, AttributeError, TypeError, ValueError):
        return 500  # the oldest MLflow's limit


def _experiment_id(client: Any, uri: str, name: str) -> str:
    """The experiment ``name``, created when missing (by whoever comes first). A new experiment of a
    ``sqlite:///`` store keeps its artifacts in ``mlartifacts/`` beside the database file (MLflow's default
    is the current directory)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = None
    if uri.startswith("sqlite:///"):  # sqlite:///rel/to/cwd.db or sqlite:////abs/path.db
        db = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        location = (db.parent / "mlartifacts").resolve().as_uri()
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except Exception:
        exp = client.get_experiment_by_name(name)  # created by another process in the meantime
        if exp is None:
            raise
        return str(exp.experiment_id)


def _find_batch_parent(client: Any, experiment_id: str, key: str) -> Any | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`daik.batch_id` = '{key}' and tags.`daik.role` = 'batch'",
        max_results=50,
    )
    if not runs:
        return None
    return min(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def batch_parent_run(
    client: Any,
    experiment_id: str,
    key: str,
    name: str,
    tags: Mapping[str, str] | None = None,
    *,
    terminate: bool = True,
) -> str:
    """The parent run of batch ``key`` (tag ``daik.batch_id``): found, or created. Two processes that
    create it at once both end with the earlier one (the later is deleted). ``terminate``: a new parent
    of a service batch ends ``FINISHED`` at once (nothing knows when the batch ends; its children carry
    the runs)."""
    _quoted_ok(key)
    found = _find_batch_parent(client, experiment_id, key)
    if found is not None:
        return str(found.info.run_id)
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={"daik.batch_id": key, "daik.role": "batch", "mlflow.runName": name, **dict(tags or {})},
    )
    mine = str(run.info.run_id)
    winner = _find_batch_parent(client, experiment_id, key)
    if winner is not None and str(winner.info.run_id) != mine:
        client.delete_run(mine)
        return str(winner.info.run_id)
    if terminate:
        client.set_terminated(mine, status="FINISHED")
    return mine


def _quoted_ok(key: str) -> None:
    if "'" in key or "`" in key:
        raise ValueError(f"batch key {key!r}: quotes are not allowed")


class _Guard:
    """Runs tracking calls, turning their failures into warnings; gives up after ``MAX_FAILURES`` in a
    row."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0
        self.disabled = False

    def __call__(self, action: str, fn: Callable[[], T]) -> T | None:
        if self.disabled:
            return None
        try:
            result = fn()
        except Exception as err:
            self.failures += 1
            if self.failures >= MAX_FAILURES:
                self.disabled = True
                tail = f"; {self.what} is off for the rest of this run (training goes on)"
            else:
                tail = "; training goes on"
            warnings.warn(
                f"{self.what}: {action} failed: {_one_line(err)}{tail}", TrackingWarning, stacklevel=2
            )
            return None
        self.failures = 0
        return result

    def stop(self) -> None:
        self.disabled = True


class MlflowCallback(Callback):
    """Logs one trainer run to MLflow (see the module docstring). ``job_id``: the tag ``daik.job_id``
    (default: the spec's name). ``parent_run_id``: the run nests under it; else ``batch_id`` finds or makes
    the batch's parent run (named ``batch_name``). ``run_id`` is the MLflow run once started."""

    def __init__(
        self,
        uri: str,
        spec: JobSpec,
        *,
        experiment: str | None = None,
        job_id: str | None = None,
        parent_run_id: str | None = None,
        batch_id: str | None = None,
        batch_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        step_interval: int = 10,
        flush_interval: float = 60.0,
        artifacts: bool = True,
    ) -> None:
        self.uri = uri
        self.spec = spec
        self.experiment = experiment or os.environ.get(MLFLOW_EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
        self.job_id = job_id or spec.name
        self.parent_run_id = parent_run_id
        self.batch_id = batch_id
        self.batch_name = batch_name
        self.tags = dict(tags or {})
        self.step_interval = max(int(step_interval), 1)
        self.flush_interval = flush_interval
        self.artifacts = artifacts
        self.run_id: str | None = None
        self._client: Any = None
        self._guard = _Guard(f"MLflow ({uri})")
        self._pending: list[Any] = []
        self._step = 0
        self._last_flush = time.monotonic()
        self._output: Path | None = None

    # ---------------------------------------------------------------------------------------- start
    def on_train_start(self, info: TrainInfo) -> None:
        self._output = info.output_dir
        self._step = info.start_step
        self._guard("starting the run", lambda: self._start(info))
        if self.run_id is None:
            self._guard.stop()

    def _start(self, info: TrainInfo) -> None:
        from mlflow.entities import Param, RunTag

        client = _mlflow_client(self.uri)
        self._client = client
        experiment_id = _experiment_id(client, self.uri, self.experiment)
        if self.parent_run_id is None and self.batch_id is not None:
            self.parent_run_id = batch_parent_run(
                client,
                experiment_id,
                self.batch_id,
                self.batch_name or f"batch {self.batch_id}",
                {"daik.kind": "batch"},
            )
        run_id = self._resumable(client, info) if info.resumed_from is not None else None
        if run_id is not None:
            client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
        else:
            tags = {
                "daik.job_id": self.job_id,
                "daik.kind": self.spec.kind,
                "daik.output_dir": str(info.output_dir.resolve()),
                "mlflow.runName": self.spec.name,
                "mlflow.source.name": "daik",
                **self.tags,
            }
            if self.batch_id is not None:
                tags["daik.batch_id"] = self.batch_id
            if self.parent_run_id is not None:
                tags["mlflow.parentRunId"] = self.parent_run_id
            run = client.create_run(experiment_id, run_name=self.spec.name, tags=tags)
            self.run_id = str(run.info.run_id)
            params = flatten_params(self.spec.model_dump(mode="json"), limit=_param_limit())
            items = [Param(k, v) for k, v in params.items()]
            for i in range(0, len(items), PARAMS_PER_CALL):
                client.log_batch(self.run_id, params=items[i : i + PARAMS_PER_CALL])
            extra = {
                "daik.device": f"{info.device} x{info.world_size}",
                "daik.params_fused": str(info.params),
                "daik.gflops_fused": f"{info.gflops:.3f}",
                "daik.train_images": str(info.train_images),
                "daik.val_images": str(info.val_images),
            }
            client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in extra.items()])
        record = {"tracking_uri": self.uri, "experiment_id": experiment_id, "run_id": self.run_id}
        (info.output_dir / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    def _resumable(self, client: Any, info: TrainInfo) -> str | None:
        """The MLflow run of the run being resumed: ``mlflow.json`` in this run folder, or in the folder of
        the checkpoint resumed from (a service job's earlier attempt), when it names this tracking URI."""
        assert info.resumed_from is not None
        for folder in (info.output_dir, info.resumed_from.parent.parent):
            path = folder / RUN_FILE
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict) or record.get("tracking_uri") != self.uri:
                continue
            run_id = str(record.get("run_id"))
            try:
                run = client.get_run(run_id)
            except Exception:
                continue
            if run.info.lifecycle_stage == "active":
                return run_id
        return None

    # -------------------------------------------------------------------------------------- metrics
    def on_batch_end(self, epoch: int, iteration: int, logs: Mapping[str, float]) -> None:
        self._step += 1
        if self.run_id is None or self._guard.disabled or self._step % self.step_interval:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for key, value in logs.items():
            if key != "images_per_s" and _finite(value):
                self._pending.append(Metric(_metric_name(f"step/{key}"), float(value), now, self._step))
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self._flush()

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        if self.run_id is None or self._guard.disabled:
            return
        from mlflow.entities import Metric

        self._step = int(metrics.get("step", self._step))
        now = int(time.time() * 1000)
        for key, value in epoch_scalars(metrics).items():
            self._pending.append(Metric(key, value, now, epoch))
        self._flush()

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending or self.run_id is None:
            return
        pending, run_id = self._pending, self.run_id

        def send() -> bool:
            for i in range(0, len(pending), METRICS_PER_CALL):
                self._client.log_batch(run_id, metrics=pending[i : i + METRICS_PER_CALL])
            return True

        if self._guard("logging metrics", send):
            self._pending = []
        else:  # kept for the next try (bounded: a long outage drops the oldest)
            self._pending = pending[-10 * METRICS_PER_CALL :]

    # ------------------------------------------------------------------------------------------ end
    def on_train_end(self, results: Mapping[str, Any]) -> None:
        if self.run_id is None or self._guard.disabled:
            return
        self._flush()
        status = results.get("status", "completed")
        if status == "completed" and self.artifacts and self._output is not None:
            self._guard("uploading the artifacts", lambda: self._log_artifacts(self._output))
        run_id = self.run_id
        end = "FINISHED" if status == "completed" else "KILLED"
        self._guard("ending the run", lambda: self._client.set_terminated(run_id, status=end))

    def on_train_error(self, error: BaseException) -> None:
        if self.run_id is None or self._guard.disabled:
            return
        self._flush()
        run_id = self.run_id
        end = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        self._guard("ending the run", lambda: self._client.set_terminated(run_id, status=end))

    def _log_artifacts(self, output: Path | None) -> None:
        assert output is not None and self.run_id is not None
        for name in ("results.json", "spec.yaml", "metrics.jsonl"):
            if (output / name).is_file():
                self._client.log_artifact(self.run_id, str(output / name))
        for path in sorted(output.iterdir()):
            plot = path.suffix.lower() in (".png", ".jpg", ".jpeg") or path.name == "gallery.json"
            if plot and path.is_file():
                self._client.log_artifact(self.run_id, str(path), "plots")
        best = output / "weights" / "best.pt"
        if best.is_file():
            self._client.log_artifact(self.run_id, str(best), "weights")


class MlflowBatch:
    """The parent run of one ``daik ablate`` (key: its output folder), its children's callbacks, and their
    final scores. Every MLflow failure is a warning."""

    def __init__(self, uri: str, key: str, name: str, *, experiment: str | None = None) -> None:
        self.uri = uri
        self.key = key
        self.name = name
        self.experiment = experiment or os.environ.get(MLFLOW_EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
        self.run_id: str | None = None
        self._client: Any = None
        self._guard = _Guard(f"MLflow ({uri})")
        self._guard("starting the batch's run", self._start)
        if self.run_id is None:
            self._guard.stop()

    @classmethod
    def for_ablation(cls, spec: JobSpec, out: Path) -> MlflowBatch | None:
        """The batch of ``daik ablate`` of ``spec`` into ``out`` when MLflow is configured, else ``None``
        (a configured MLflow without its extra is an error)."""
        uri = mlflow_uri(spec)
        if uri is None:
            return None
        check_tracking(spec)
        import hashlib

        key = "ablate-" + hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]
        return cls(uri, key, f"ablate {spec.name}")

    def _start(self) -> None:
        client = _mlflow_client(self.uri)
        self._client = client
        experiment_id = _experiment_id(client, self.uri, self.experiment)
        self.run_id = batch_parent_run(
            client, experiment_id, self.key, self.name, {"daik.kind": "ablate"}, terminate=False
        )
        run_id = self.run_id
        client.update_run(run_id, status="RUNNING")

    def child(self, spec: JobSpec, tags: Mapping[str, str] | None = None) -> Callback | None:
        """The callback of one run of the batch (``None`` when MLflow failed)."""
        if self.run_id is None or self._guard.disabled:
            return None
        return MlflowCallback(
            self.uri,
            spec,
            experiment=self.experiment,
            parent_run_id=self.run_id,
            batch_id=self.key,
            tags=tags,
        )

    def log_scores(self, child: Callback | None, scores: Mapping[str, Any], step: int) -> None:
        """The final scores of a child run (``map50`` ...) into that run, as ``final/<name>``."""
        if not isinstance(child, MlflowCallback) or child.run_id is None or self._guard.disabled:
            return
        run_id = child.run_id
        values = epoch_scalars(scores)

        def send() -> None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            metrics = [Metric(f"final/{k}", v, now, step) for k, v in values.items()]
            self._client.log_batch(run_id, metrics=metrics)

        self._guard("logging the scores", send)

    def finish(self, status: str, artifacts: Sequence[Path] = ()) -> None:
        """End the parent run (``completed`` -> FINISHED, ``failed`` -> FAILED, else KILLED) with the
        table's files."""
        if self.run_id is None or self._guard.disabled:
            return
        run_id = self.run_id

        def end() -> None:
            for path in artifacts:
                if path.is_file():
                    self._client.log_artifact(run_id, str(path))
            end = {"completed": "FINISHED", "failed": "FAILED"}.get(status, "KILLED")
            self._client.set_terminated(run_id, status=end)

        self._guard("ending the batch's run", end)


# -------------------------------------------------------------------------------------- tensorboard
class TensorBoardCallback(Callback):
    """TensorBoard event files in ``<output>/tensorboard`` (or ``log_dir``): the epoch metrics at the epoch,
    the batch's loss terms and learning rate as ``step/<name>`` every ``step_interval`` steps."""

    def __init__(self, log_dir: str | Path | None = None, step_interval: int = 1) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.step_interval = max(int(step_interval), 1)
        self._writer: Any = None
        self._step = 0
        self._guard = _Guard("TensorBoard")

    def on_train_start(self, info: TrainInfo) -> None:
        self._step = info.start_step
        log_dir = self.log_dir if self.log_dir is not None else info.output_dir / "tensorboard"
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _extra_error("tensorboard", "TensorBoard logging") from None
        self._writer = self._guard("opening the event file", lambda: SummaryWriter(str(log_dir)))
        if self._writer is None:
            self._guard.stop()

    def on_batch_end(self, epoch: int, iteration: int, logs: Mapping[str, float]) -> None:
        self._step += 1
        if self._writer is None or self._guard.disabled or self._step % self.step_interval:
            return
        step, writer = self._step, self._writer

        def write() -> None:
            for key, value in logs.items():
                if key != "images_per_s" and _finite(value):
                    writer.add_scalar(f"step/{key}", float(value), step)

        self._guard("writing", write)

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        if self._writer is None or self._guard.disabled:
            return
        self._step = int(metrics.get("step", self._step))
        writer = self._writer

        def write() -> None:
            for key, value in epoch_scalars(metrics).items():
                writer.add_scalar(key, value, epoch)
            writer.flush()

        self._guard("writing", write)

    def on_train_end(self, results: Mapping[str, Any]) -> None:
        self._close()

    def on_train_error(self, error: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self._guard("closing the event file", writer.close)
