"""Structure the rest of the code relies on: no import circle inside webapp, tasks found by name."""

from __future__ import annotations

import ast
from pathlib import Path

from webapp import dispatch

WEBAPP = Path(__file__).resolve().parents[2] / "webapp"


def _module_name(path: Path) -> str:
    parts = path.relative_to(WEBAPP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """webapp module -> the webapp modules it imports anywhere in its body (lazy imports included)."""
    modules = {_module_name(p): p for p in WEBAPP.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle as a path [a, b, …, a], or [] when the graph has none."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_it_finds_a_planted_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_webapp_has_no_import_circle_not_even_through_lazy_imports() -> None:
    assert find_cycle(import_graph()) == []


def test_services_and_views_never_import_the_worker_side() -> None:
    graph = import_graph()
    worker_side = {"webapp.tasks", "webapp.execution", "webapp.evaluations.runner"}
    for name in ("webapp.services", "webapp.evaluations.services", "webapp.dispatch"):
        assert not graph[name] & worker_side, name
    for name in (n for n in graph if n.startswith("webapp.views")):
        assert not graph[name] & worker_side, name


def test_every_dispatched_task_name_is_a_registered_task() -> None:
    import webapp.tasks  # noqa: F401  (registers the tasks)
    from webapp.celery import app

    names = {getattr(dispatch, n) for n in dir(dispatch) if n.isupper()}
    assert names and names <= set(app.tasks)
