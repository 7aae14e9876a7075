"""Command line: ``python -m trainer train|plan|presets|prepare-models|evaluate``.

``train`` prints a progress bar, appends every metric to ``<output_dir>/metrics.jsonl`` and writes
the full event stream (metrics, samples of both modes, logs, checkpoints: what the web app's
worker ingests) to ``<output_dir>/events.jsonl``, or to ``--events PATH``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from trainer.config import ConfigError, TrainConfig, apply_overrides, check_resources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model")
    _config_args(t)
    t.add_argument(
        "--events", help="append the JSON-lines event stream (samples included) here; default <output_dir>/events.jsonl"
    )
    t.add_argument("--no-events", action="store_true", help="write no event stream (metrics.jsonl only)")
    t.add_argument("--stop-file", help="stop cooperatively between steps once this file exists")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (for workers)")
    p = sub.add_parser("prepare-models", help="build/convert the bundled models into the model cache")
    p.add_argument("names", nargs="*", default=["tiny-random", "smollm2-135m"])
    pl = sub.add_parser("plan", help="estimate per-GPU memory and step time before launching")
    _config_args(pl)
    pl.add_argument("--gpu", help="GPU type (trainer.planner.GPU_TYPES); without it no fit verdict")
    pl.add_argument("--gpus", type=int, help="GPUs (default: the config's gpus)")
    sub.add_parser("presets", help="list the training presets")
    e = sub.add_parser("evaluate", help="evaluate a checkpoint on a benchmark in both modes")
    e.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "prepare-models":
        return _prepare(args.names)
    if args.command == "plan":
        return _plan(args)
    if args.command == "presets":
        from trainer.presets import all_presets

        for preset in all_presets():
            print(f"{preset.label:<28} {preset.description}")
        return 0
    if args.command == "evaluate":
        from trainer.evaluation.evaluate import main as evaluate_main

        return evaluate_main(args.rest)
    return _train(args)


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", help="start from a preset (python -m trainer presets lists them)")
    parser.add_argument("--config", help="YAML or JSON TrainConfig (defaults apply to missing fields)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")


def _load_config(args: argparse.Namespace) -> TrainConfig:
    """Preset values, then the config file's, then each ``--set``."""
    if args.preset and args.config:
        raise ConfigError("preset", "give --preset or --config, not both (--set overrides either)")
    if args.preset:
        from trainer.presets import load_preset

        base = load_preset(args.preset).config()
    else:
        base = TrainConfig.load(args.config) if args.config else TrainConfig()
    return apply_overrides(base, args.set) if args.set else base


def _plan(args: argparse.Namespace) -> int:
    from trainer.planner import GPU_TYPES, describe, plan_memory

    try:
        cfg = _load_config(args)
        if args.gpu and args.gpu not in GPU_TYPES:
            raise ConfigError("--gpu", f"unknown GPU type {args.gpu!r}; valid: {', '.join(GPU_TYPES)}")
        plan = plan_memory(cfg, gpu=GPU_TYPES[args.gpu] if args.gpu else None, gpus=args.gpus)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe(plan))
    return 0 if plan.fits is not False else 1


def _train(args: argparse.Namespace) -> int:
    try:
        cfg = _load_config(args)
        if not args.events and not args.no_events:
            args.events = str(Path(cfg.output_dir) / "events.jsonl")
        check_resources(cfg)  # on the host that reads the files, before any model is loaded
        _check_writable(Path(cfg.output_dir), Path(args.events) if args.events else None)
    except (ConfigError, OSError) as exc:
        print(f"error: invalid config: {exc}", file=sys.stderr)
        if args.events:  # the worker reads the cause from the event stream (when it can be written)
            import contextlib

            from trainer.events import JsonlEventWriter

            with contextlib.suppress(OSError):
                failed = JsonlEventWriter(args.events)
                failed.write("log", level="error", message=f"invalid config: {exc}")
                failed.close()
        return 2
    from trainer.engine.distributed import DistContext
    from trainer.events import Callbacks, JsonlEventWriter
    from trainer.loop import train

    dist = DistContext.from_env()
    is_main = dist is None or dist.rank == 0
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer = JsonlEventWriter(args.events, stop_file=args.stop_file) if args.events and is_main else None
    cb = writer.callbacks() if writer else Callbacks()
    if args.stop_file and not writer:
        cb.should_stop = lambda: Path(args.stop_file).exists()
    cb = _with_console(cb, out / "metrics.jsonl", cfg.steps, progress=is_main and not args.no_progress, enabled=is_main)
    _stop_on_sigterm(cb)
    try:
        result = train(cfg, cb, resume=args.resume, dist=dist)
    except Exception as exc:
        if writer:
            writer.write("log", level="error", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if dist:
            dist.close()
    if writer:
        writer.write("done", steps=result.steps_done, stopped_early=result.stopped_early)
        writer.sync()
        writer.close()
    return 0


def _check_writable(output_dir: Path, events: Path | None) -> None:
    """Create the output folder (and the events file's) now, so that an unwritable one is a clear
    error before a model is loaded, not a traceback at the first checkpoint."""
    import tempfile

    for folder in dict.fromkeys(p for p in (output_dir, events.parent if events else None) if p is not None):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as exc:
            field = "output_dir" if folder == output_dir else "--events"
            raise ConfigError(field, f"cannot write to {folder}: {exc.strerror or exc}") from None


def _stop_on_sigterm(cb: Any) -> None:
    """First SIGTERM: stop at the next safe point (and checkpoint); a second one kills at once."""
    import signal

    received: list[int] = []
    inner = cb.should_stop

    def handler(signum: int, frame: Any) -> None:
        if received:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)
        received.append(signum)

    signal.signal(signal.SIGTERM, handler)
    cb.should_stop = lambda: bool(received) or inner()


CONSOLE_KEYS = {"train/reward": "reward", "normal/accuracy": "normal_acc", "he/accuracy": "he_acc"}
CONSOLE_KEYS.update({"normal/length": "normal_len", "he/length": "he_len", "split/he_normal_kl": "kl"})
"""What the progress bar and the per-step line show (label per metric key)."""


def _with_console(cb: Any, metrics_path: Path, total: int, *, progress: bool, enabled: bool) -> Any:
    """Wrap callbacks with a tqdm bar and a metrics JSONL next to the checkpoints."""
    if not enabled:
        return cb
    from tqdm import tqdm

    bar = tqdm(total=total, unit="step", disable=not progress)
    inner_metrics, inner_progress = cb.on_metrics, cb.on_progress

    def on_metrics(step: int, values: dict[str, float]) -> None:
        with metrics_path.open("a") as fh:
            fh.write(json.dumps({"step": step, **values}) + "\n")
        shown = {label: round(values[k], 3) for k, label in CONSOLE_KEYS.items() if k in values}
        bar.set_postfix(shown)
        if not progress:  # no bar (a worker's child): one line per step for the run's log
            timing = f" ({values['timing/step_s']:.1f} s)" if "timing/step_s" in values else ""
            print(f"step {step}/{total}{timing} " + " ".join(f"{k}={v}" for k, v in shown.items()), flush=True)
        inner_metrics(step, values)

    def on_progress(done: int, total_steps: int) -> None:
        bar.n = done
        bar.refresh()
        inner_progress(done, total_steps)

    cb.on_metrics, cb.on_progress = on_metrics, on_progress
    return cb


def _prepare(names: list[str]) -> int:
    from trainer.registry import ModelUnavailable, resolve

    for name in names:
        try:
            print(f"{name}: {resolve(name)}")
        except ModelUnavailable as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
    return 0
