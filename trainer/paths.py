"""Where a run's files live inside its output folder (no torch: the web tier reads these too).

output_dir/checkpoints/step_NNNNNN/   a Hugging Face folder (from_pretrained loads it) plus
                                      trainer_state.pt (optimizer, RNG, step)
"""

from __future__ import annotations

from pathlib import Path

STATE_FILE = "trainer_state.pt"


def run_folder(runs_dir: str | Path, run_id: int) -> Path:
    """A web-app run's folder on its worker (``run:<id>@<step>`` models read its checkpoints)."""
    return Path(runs_dir) / f"run-{run_id}"


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"step_{step:06d}"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (its state file written, not a ``.tmp`` folder), or None."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return None
    done = sorted(
        p
        for p in root.iterdir()
        if p.name.startswith("step_") and (p / STATE_FILE).is_file() and not p.name.endswith(".tmp")
    )
    return done[-1] if done else None
