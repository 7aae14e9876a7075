"""Versioned training recipes: ``trainer/presets/<name>.yaml`` (no torch: the run form lists them).

Each file holds ``version`` (bumped when a recipe's values change, so a run records which recipe it
followed), a one-line ``description`` and ``config``: TrainConfig fields. A preset is a starting
point: ``python -m trainer train --preset NAME --set field=value`` and the run form's preset picker
apply it, then the user's own values on top; the preset's name stays on the run (``preset``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainer.config import ConfigError, TrainConfig

PRESETS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Preset:
    name: str
    version: int
    description: str
    values: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.name} (v{self.version})"

    def config(self, **overrides: Any) -> TrainConfig:
        """The validated config: the preset's values, then ``overrides``, with ``preset`` set."""
        return TrainConfig.from_dict({**self.values, **overrides, "preset": self.name})


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(name: str) -> Preset:
    """Read and validate a preset; unknown names and malformed files raise ConfigError('preset')."""
    if name not in preset_names():
        raise ConfigError("preset", f"unknown preset {name!r}; available: {', '.join(preset_names())}")
    data = yaml.safe_load((PRESETS_DIR / f"{name}.yaml").read_text())
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ConfigError("preset", f"{name}.yaml must hold version, description and a config mapping")
    preset = Preset(name, int(data.get("version", 1)), str(data.get("description", "")), dict(data["config"]))
    preset.config()  # every value must pass TrainConfig's own validation
    return preset


def all_presets() -> list[Preset]:
    return [load_preset(name) for name in preset_names()]
