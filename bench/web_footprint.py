"""What a web process costs: URL-conf load time and resident memory, with and without torch, side by side.

    python bench/web_footprint.py [--repeats 5] [--before a16ebcb] [--no-before] [--no-gunicorn]

Each variant runs in fresh interpreters (the median of ``--repeats`` is printed) under the
production settings (no demo, no debug, SQLite and the filesystem broker in a temporary folder, so
nothing is reached over the network):

* ``web, torch blocked``: torch and transformers cannot be imported, as in the web image
  (requirements-web.txt); proves the web tier does not need them.
* ``web, torch importable``: the full development environment; nothing imports torch, so this
  should equal the line above.
* ``web + torch imported``: the same URL conf plus ``import torch, transformers`` first: what every
  web process paid while the web tier imported torch.
* ``before (REV)``: the URL conf of an older revision (default a16ebcb, the last one before the
  torch-free contract), exported with ``git archive``; ``--no-before`` skips it.

URL conf = ``django.setup()``, ``import webapp.urls`` and every view module through the resolver,
timed inside the interpreter; "process" adds the interpreter's own start. RSS is the process's
resident set after loading. With gunicorn installed it then starts ``gunicorn --workers 1`` for
each variant, times the first ``/login/`` answer from the start, and reads the worker's RSS after
it served ``/login/`` and ``/healthz``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "transformers")

BLOCKER = f"""
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""

PROBE = """
import json, sys, time
t0 = time.perf_counter()
{prelude}
t1 = time.perf_counter()
import django
django.setup()
from django.urls import get_resolver
import webapp.urls
get_resolver().url_patterns
t2 = time.perf_counter()
rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
print(json.dumps({{"prelude_s": t1 - t0, "urlconf_s": t2 - t1, "rss_kib": rss,
                   "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}}))
"""

PRELUDES = {"blocked": BLOCKER, "importable": "", "torch": "import torch, transformers"}


@dataclass
class Variant:
    label: str
    tree: Path
    prelude: str


@dataclass
class Probe:
    urlconf_s: float
    process_s: float
    rss_mib: float
    torch: bool


def env_for(var_dir: Path, tree: Path) -> dict[str, str]:
    var_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    return env | {
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "SECRET_KEY": "bench-" + "k" * 58,
        "PSL_DEMO": "0",
        "DEBUG": "0",
        "PSL_VAR_DIR": str(var_dir),
        "PYTHONPATH": str(tree),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def probe_once(variant: Variant, var_dir: Path) -> Probe:
    code = PROBE.format(prelude=variant.prelude)
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=variant.tree,
        env=env_for(var_dir, variant.tree),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    process_s = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{variant.label}: the probe failed:\n{out.stderr[-3000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return Probe(data["urlconf_s"] + data["prelude_s"], process_s, data["rss_kib"] / 1024, data["torch"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gunicorn_once(variant: Variant, var_dir: Path, shim_dir: Path) -> tuple[float, float]:
    """Seconds from start to the first /login/ answer, and the worker's RSS (MiB) after serving."""
    shim = shim_dir / f"shim_{abs(hash(variant.label))}.py"
    shim.write_text(variant.prelude + "\nfrom webapp.wsgi import application  # noqa: E402,F401\n")
    port = free_port()
    env = env_for(var_dir, variant.tree)
    env["PYTHONPATH"] = f"{shim_dir}{os.pathsep}{variant.tree}"
    env["ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    cmd = [
        sys.executable, "-m", "gunicorn", f"{shim.stem}:application", "--workers", "1",
        "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
    ]  # fmt: skip
    start = time.perf_counter()
    master = subprocess.Popen(cmd, cwd=variant.tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        first = _wait_for(f"http://127.0.0.1:{port}/login/", start, master)
        with contextlib.suppress(urllib.error.HTTPError):  # an older revision has no /healthz
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30).read()
        workers = psutil.Process(master.pid).children()
        rss = max(w.memory_info().rss for w in workers) / 2**20
        return first, rss
    finally:
        master.terminate()
        master.wait(timeout=30)


def _wait_for(url: str, start: float, master: subprocess.Popen[bytes]) -> float:
    while time.perf_counter() - start < 300:
        if master.poll() is not None:
            err = master.stderr.read().decode() if master.stderr else ""
            raise SystemExit(f"gunicorn exited: {err[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=30).read()
            return time.perf_counter() - start
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"no answer from {url} within 300 s")


def export_tree(rev: str, into: Path) -> Path | None:
    """The repository at ``rev`` as plain files (git archive), or None when git cannot give it."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev], capture_output=True, check=False)
    if archive.returncode != 0:
        print(f"(skipping before: git archive {rev} failed)")
        return None
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", default="a16ebcb", help="older revision to compare with (default a16ebcb)")
    parser.add_argument("--no-before", action="store_true")
    parser.add_argument("--no-gunicorn", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="psl-web-footprint-"))
    try:
        variants = [
            Variant("web, torch blocked", REPO, PRELUDES["blocked"]),
            Variant("web, torch importable", REPO, PRELUDES["importable"]),
            Variant("web + torch imported", REPO, PRELUDES["torch"]),
        ]
        if not args.no_before and (old := export_tree(args.before, tmp / "before")):
            variants.append(Variant(f"before ({args.before})", old, ""))
        gunicorn = not args.no_gunicorn and importlib.util.find_spec("gunicorn") is not None
        report(variants, tmp, args.repeats, gunicorn=gunicorn)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(variants: list[Variant], tmp: Path, repeats: int, *, gunicorn: bool) -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {repeats} fresh interpreters")
    print(f"{'variant':<24} {'URL conf s':>10} {'process s':>10} {'RSS MiB':>8}  torch loaded")
    # Variants interleave (A B C A B C …) so that machine load affects all alike.
    runs: dict[str, list[Probe]] = {v.label: [] for v in variants}
    for i in range(repeats):
        for v in variants:
            runs[v.label].append(probe_once(v, tmp / f"var-{i}"))
    for v in variants:
        ps = runs[v.label]
        med = statistics.median
        print(
            f"{v.label:<24} {med(p.urlconf_s for p in ps):>10.2f} {med(p.process_s for p in ps):>10.2f} "
            f"{med(p.rss_mib for p in ps):>8.0f}  {'yes' if any(p.torch for p in ps) else 'no'}"
        )
    if not gunicorn:
        print("\n(gunicorn not installed or --no-gunicorn: no worker figures)")
        return
    print(f"\ngunicorn --workers 1, median of {repeats}: start to first /login/ answer, worker RSS after serving")
    print(f"{'variant':<24} {'first answer s':>14} {'worker RSS MiB':>15}")
    served: dict[str, list[tuple[float, float]]] = {v.label: [] for v in variants}
    shim_dir = tmp / "shims"
    shim_dir.mkdir()
    for i in range(repeats):
        for v in variants:
            served[v.label].append(gunicorn_once(v, tmp / f"var-{i}", shim_dir))
    for v in variants:
        firsts, rss = zip(*served[v.label], strict=True)
        print(f"{v.label:<24} {statistics.median(firsts):>14.2f} {statistics.median(rss):>15.0f}")


if __name__ == "__main__":
    main()
