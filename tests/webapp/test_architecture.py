"""Structure the rest of the code relies on: no import circle inside webapp, tasks found by name."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.choices import BOOL_WORDS
from trainer.config import EVAL_SAMPLING, FIELD_SYMBOLS, TrainConfig
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
    worker_side = {"webapp.tasks", "webapp.worker.execution", "webapp.evaluations.runner"}
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
    assert _where(_defines("int_param", "int_or_none", "bool_param"), home="webapp/http/params.py") == []


def _filters_bookkeeping(node: ast.AST) -> bool:
    """``….startswith("_")``: a filter of the config's bookkeeping keys (trainer.config.config_values)."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "startswith"
        and any(isinstance(a, ast.Constant) and a.value == "_" for a in node.args)
    )


def _labels_a_symbol(node: ast.AST) -> bool:
    """A literal ``"kappa": "κ"`` (or ``"cfg.kappa": "κ"``): a label map of its own for a method symbol."""
    if not isinstance(node, ast.Dict):
        return False
    return any(
        isinstance(k, ast.Constant)
        and k.value in {*FIELD_SYMBOLS, *(f"cfg.{name}" for name in FIELD_SYMBOLS)}
        and isinstance(v, ast.Constant)
        and isinstance(v.value, str)
        and v.value[:1] in {s[0] for s in FIELD_SYMBOLS.values()}
        for k, v in zip(node.keys, node.values, strict=True)
    )


def test_it_spots_a_planted_filter_and_label_map() -> None:
    assert _filters_bookkeeping(ast.parse('k.startswith("_")').body[0].value)  # type: ignore[attr-defined]
    assert _labels_a_symbol(ast.parse('{"cfg.eta_normal": "η_normal"}').body[0].value)  # type: ignore[attr-defined]


def test_bookkeeping_keys_are_filtered_in_one_place() -> None:
    assert _where(_filters_bookkeeping, home="trainer/config.py") == []


def test_the_methods_symbols_have_one_label_map() -> None:
    assert _where(_labels_a_symbol, home="trainer/config.py") == []


# The method's hyperparameters (docs/method.md §4, §10): their defaults live in TrainConfig only.
HYPERPARAMETERS = {
    "eta", "eta_normal", "alpha", "kappa", "clamp_order", "estimator", "normalize", "lowest_ratio",
    "entropy_coef", "entropy_adv_alpha", "forking_top_ratio", "cov_ratio", "cov_lb", "cov_ub", "kl_cov_coef",
    "clip_low", "clip_high", "loss_agg",
}  # fmt: skip


def _defaults_a_hyperparameter(node: ast.AST) -> bool:
    """``def f(*, kappa=2.0)`` or ``config.get("kappa", 2.0)``: a second default for a TrainConfig field."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        a = node.args
        positional = [*a.posonlyargs, *a.args][len(a.posonlyargs) + len(a.args) - len(a.defaults) :]
        keyword = [arg for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
        return any(arg.arg in HYPERPARAMETERS for arg in [*positional, *keyword])
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and len(node.args) == 2
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value in HYPERPARAMETERS
    )


def test_it_spots_a_planted_default() -> None:
    assert _defaults_a_hyperparameter(ast.parse("def f(x, *, kappa=2.0): pass").body[0])
    assert _defaults_a_hyperparameter(ast.parse('cfg.get("eta", 0.03)').body[0].value)  # type: ignore[attr-defined]
    assert not _defaults_a_hyperparameter(ast.parse("def f(x, *, kappa): pass").body[0])


def test_hyperparameter_defaults_live_in_train_config_only() -> None:
    assert {f.name for f in dataclasses.fields(TrainConfig)} >= HYPERPARAMETERS
    assert _where(_defaults_a_hyperparameter, home="trainer/config.py") == []


def _spells_the_eval_protocol(node: ast.AST) -> bool:
    """``temperature=0.6``, ``"top_p": 0.95``, ``top_k: int = 20``, ``opts.get("top_k", 20)``: the protocol again."""
    protocol = {"temperature": EVAL_SAMPLING.temperature, "top_k": EVAL_SAMPLING.top_k, "top_p": EVAL_SAMPLING.top_p}
    pairs: list[tuple[Any, ast.AST]] = []
    if isinstance(node, ast.keyword):
        pairs = [(node.arg, node.value)]
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        pairs = [(node.target.id, node.value)]
    elif isinstance(node, ast.Dict):
        pairs = [(k.value, v) for k, v in zip(node.keys, node.values, strict=True) if isinstance(k, ast.Constant)]
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        pairs = (
            [(node.args[0].value, node.args[1])]
            if len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
            else []
        )
    return any(
        name in protocol and isinstance(v, ast.Constant) and type(v.value) in (int, float) and v.value == protocol[name]
        for name, v in pairs
    )


def test_it_spots_a_planted_protocol() -> None:
    assert _spells_the_eval_protocol(ast.parse("f(temperature=0.6)").body[0].value.keywords[0])  # type: ignore[attr-defined]
    assert not _spells_the_eval_protocol(ast.parse("f(temperature=1.0)").body[0].value.keywords[0])  # type: ignore[attr-defined]


def test_the_evaluation_sampling_is_written_once() -> None:
    assert _where(_spells_the_eval_protocol, home="trainer/config.py") == []


def _labels_the_modes(node: ast.AST) -> bool:
    """``{"normal": "Normal …", "he": "High-entropy …"}``: a label map of its own for the two modes."""
    if not isinstance(node, ast.Dict):
        return False
    spelled = {"Mode.NORMAL": "normal", "Mode.NORMAL.value": "normal", "Mode.HE": "he", "Mode.HE.value": "he"}
    keys = {
        k.value if isinstance(k, ast.Constant) else spelled.get(ast.unparse(k))
        for k, v in zip(node.keys, node.values, strict=True)
        if k is not None and isinstance(v, ast.Constant) and isinstance(v.value, str)
    }
    return {"normal", "he"} <= keys


def test_the_modes_have_one_label_map() -> None:
    assert _labels_the_modes(ast.parse('{"normal": "Normal", "he": "HE"}').body[0].value)  # type: ignore[attr-defined]
    assert _labels_the_modes(ast.parse('{Mode.NORMAL.value: "N", Mode.HE.value: "H"}').body[0].value)  # type: ignore[attr-defined]
    assert _where(_labels_the_modes, home="webapp/models.py") == []  # Mode's choices
