"""Installed distributions made on disk for tests: a module and its `.dist-info` with entry
points, found by `importlib.metadata` once `root` is on the path."""

from __future__ import annotations

from pathlib import Path

from proxy.tools.registry import ENTRY_POINT_GROUP


def write_distribution(root: Path, module: str, source: str, entry_points: dict[str, str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(source, encoding="utf-8")
    dist = root / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n",
        encoding="utf-8",
    )
    lines = [
        f"[{ENTRY_POINT_GROUP}]",
        *(f"{name} = {value}" for name, value in entry_points.items()),
    ]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
