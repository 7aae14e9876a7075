"""Structure the rest of the code relies on: no import circle inside webapp, tasks found by name."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

from trainer.choices import BOOL_WORDS
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


# --- one home for every fact ------------------------------------------------------------------------

REPO = WEBAPP.parent
SOURCES = sorted(p for d in ("webapp", "trainer") for p in (REPO / d).rglob("*.py") if "migrations" not in p.parts)


def _where(predicate: Callable[[ast.AST], bool], *, home: str) -> list[str]:
    """'path:line' of every node matching ``predicate`` outside the module ``home``."""
    found = []
    for path in SOURCES:
        rel = path.relative_to(REPO).as_posix()
        if rel != home:
            found += [f"{rel}:{n.lineno}" for n in ast.walk(ast.parse(path.read_text())) if predicate(n)]
    return found


def _spells_booleans(node: ast.AST) -> bool:
    """A literal collection holding "true" or "yes" and another boolean word: a word list of its own."""
    if not isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict):
        return False
    items = node.keys if isinstance(node, ast.Dict) else node.elts
    words = {i.value.lower() for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)}
    return bool(words & {"true", "yes"}) and len(words & set(BOOL_WORDS)) >= 2


def _defines(*names: str) -> Callable[[ast.AST], bool]:
    return lambda n: isinstance(n, ast.FunctionDef) and n.name.lstrip("_") in names


def test_it_spots_a_planted_word_list() -> None:
    assert _spells_booleans(ast.parse('x in ("1", "true")').body[0].value.comparators[0])  # type: ignore[attr-defined]
    assert not _spells_booleans(ast.parse('("auto", "on", "off")').body[0].value)  # type: ignore[attr-defined]


def test_booleans_are_spelled_in_one_word_list() -> None:
    assert _where(_spells_booleans, home="trainer/choices.py") == []
    assert _where(_defines("parse_bool"), home="trainer/choices.py") == []


def test_query_parameters_are_read_by_one_set_of_helpers() -> None:
    assert _where(_defines("int_param", "int_or_none", "bool_param"), home="webapp/params.py") == []
