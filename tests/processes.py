"""Process trees from /proc (Linux): who is whose child, who is still running. Stdlib only, so that
tests/fault_probe.py (run as a script) and the tests share it."""

from __future__ import annotations

from pathlib import Path


def _state_and_parent(pid_dir: Path) -> tuple[str, int] | None:
    try:
        fields = (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def children() -> dict[int, list[int]]:
    """parent pid -> the pids of its living (not zombie) children."""
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        state = _state_and_parent(entry)
        if state is not None and state[0] != "Z":
            found.setdefault(state[1], []).append(int(entry.name))
    return found


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid``."""
    tree, found, todo = children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pids) -> set[int]:
    """The pids that still run (not gone, not zombies)."""
    alive = set()
    for pid in pids:
        state = _state_and_parent(Path(f"/proc/{pid}"))
        if state is not None and state[0] != "Z":
            alive.add(pid)
    return alive
