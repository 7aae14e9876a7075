"""Verifiable rewards: math answers (docs/method.md §6.1) and multiple-choice letters (docs/method.md §6.2).

Pure functions, no Django, no model. Both rewards are binary (1.0 / 0.0) and never raise.

Grading order of :func:`math_reward` (docs/method.md §6.1; PRM800K's grader logic, re-implemented):

1. Think gate (only with ``require_think=True``): 0 unless the response holds both ``\\boxed{`` and
   ``</think>``; only the text after the last ``</think>`` is read.
2. Extraction, :func:`boxed_answer`: the greedy single-line pattern of docs/method.md §6.1 (:func:`extract_boxed`),
   falling back to brace matching (:func:`extract_boxed_balanced`) only when the greedy capture is
   missing or its braces don't balance (two boxes on one line, a box spanning lines). Where the
   released code extracts a well-formed answer both agree; the fallback only rescues answers the
   greedy pattern garbles.
3. :func:`answers_match`, cheapest test first:
   (a) equal after the MATH ("mathd") normalisation, :func:`normalize_mathd`;
   (b) equal after the sympy-oriented normalisation, :func:`normalize_sympy`;
   (c) element-wise on tuples/intervals: same element count and, for several elements, the same
       opening and closing bracket; per element, two plain fractions must match as written
       (unreduced fractions stay wrong), an integer never equals a non-integer, two plain numbers
       compare as exact rationals (the fast path: no sympy), and anything else is parsed with sympy
       and compared by ``math_verify.verify`` (the symbolic step), skipped for expressions with more
       than two distinct letters or exponents that could blow up, and cut off after
       :data:`SYMBOLIC_TIME_LIMIT` seconds.

The symbolic step imports sympy and math-verify lazily, so grading numbers stays fast (well under
a millisecond per response) and importing this module is cheap.

Deliberate differences from the released grader: a small LaTeX-to-text converter stands in for
pylatexenc (not installed); unit words are stripped only as whole words; "5 million" becomes an
integer; the symbolic step uses math-verify's comparison (which also accepts a float agreeing to 6
decimals with a symbolic value, e.g. 0.707107 for √2/2; plain numbers still compare
exactly); and the arguments are not swapped (docs/method.md §6.1 step 4: only the bracket check could notice,
and it compares both brackets).
"""

from __future__ import annotations

import functools
import re
import signal
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any, TypeVar

T = TypeVar("T")

SYMBOLIC_TIME_LIMIT = 2.0
"""Seconds one symbolic comparison may take before it counts as "not equal"."""

MAX_SYMBOLIC_CHARS = 200
"""Longer normalised answers skip the symbolic step: a model's garbage shouldn't cost a second."""

# --------------------------------------------------------------------------------------------
# Extraction

_BOXED_GREEDY = re.compile(r"\\boxed\{(.*)\}")  # no DOTALL: one line, up to that line's last "}"
_BOXED_OPEN = "\\boxed{"


def extract_boxed(text: str) -> str | None:
    """The last greedy single-line ``\\boxed{…}`` capture (docs/method.md §6.1 step 2, as the released code).

    The capture runs to the last ``}`` of its line, so ``\\boxed{1} or \\boxed{2}`` on one line gives
    ``1} or \\boxed{2``. :func:`boxed_answer` repairs such captures; use this one to reproduce the
    released code exactly.
    """
    matches = _BOXED_GREEDY.findall(text)
    return matches[-1] if matches else None


def extract_boxed_balanced(text: str) -> str | None:
    """The content of the last ``\\boxed{…}``, matching braces (handles nesting and line breaks).

    Returns None when there is no box or the last one is never closed (a truncated response).
    """
    start = text.rfind(_BOXED_OPEN)
    if start < 0:
        return None
    depth = 1
    begin = start + len(_BOXED_OPEN)
    for i in range(begin, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i]
    return None


def braces_balance(text: str) -> bool:
    """True when every ``}`` closes an earlier ``{`` and none is left open."""
    depth = 0
    for ch in text:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return depth == 0


def boxed_answer(text: str) -> str | None:
    """The answer the graders read: greedy capture if well-formed, else the brace-matched one."""
    greedy = extract_boxed(text)
    if greedy is not None and braces_balance(greedy):
        return greedy
    return extract_boxed_balanced(text)


def final_text(response: str, *, require_think: bool = False) -> str | None:
    """The part of a response that is graded, or None when the think gate fails (docs/method.md §6.1 step 1)."""
    if not require_think:
        return response
    if "</think>" not in response or _BOXED_OPEN not in response:
        return None
    return response.rsplit("</think>", 1)[1]


# --------------------------------------------------------------------------------------------
# (a) MATH-dataset ("mathd") normalisation


def normalize_mathd(answer: str) -> str:
    """Hendrycks-MATH style normalisation of a LaTeX answer (docs/method.md §6.1 step 3a)."""
    s = _strip_text_wrapper(answer.strip())
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("\\tfrac", "\\frac").replace("\\dfrac", "\\frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    s = s.split("\\text{ ", 1)[0]  # a trailing unit written as "\text{ cm}"
    s = s.replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0].strip()) <= 2:  # "x = 3", "k=5": keep the value
        s = sides[1]
    s = _brace_single_arguments(s, "\\sqrt", 1)
    s = s.replace(" ", "")
    s = _brace_single_arguments(s, "\\frac", 2)
    if s == "0.5":
        return "\\frac{1}{2}"
    m = re.fullmatch(r"(-?\d+)/(\d+)", s)
    return f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}" if m else s


def _strip_text_wrapper(s: str) -> str:
    m = re.fullmatch(r"\\text\{(.+?)\}", s, flags=re.DOTALL)
    return m.group(1) if m else s


def _brace_single_arguments(s: str, command: str, n_args: int) -> str:
    """Rewrite ``\\frac12`` as ``\\frac{1}{2}`` and ``\\sqrt3`` as ``\\sqrt{3}``.

    An argument is a braced group or a single non-space character; ``\\sqrt[3]{x}`` is left alone.
    """
    out: list[str] = []
    i = 0
    while (j := s.find(command, i)) >= 0:
        k = j + len(command)
        out.append(s[i:k])
        for _ in range(n_args):
            while k < len(s) and s[k] == " ":
                k += 1
            if k >= len(s) or s[k] == "[" or s[k] == "\\":
                break
            if s[k] == "{":
                end = _matching_brace(s, k)
                if end < 0:
                    break
                out.append(s[k : end + 1])
                k = end + 1
            else:
                out.append("{" + s[k] + "}")
                k += 1
        i = k
    out.append(s[i:])
    return "".join(out)


def _matching_brace(s: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(s)):
        depth += (s[i] == "{") - (s[i] == "}")
        if depth == 0:
            return i
    return -1


# --------------------------------------------------------------------------------------------
# (b) sympy-oriented normalisation

# Unit words the released grader strips; unlike it, never from inside a longer word.
# fmt: off
_UNITS = ("degree", "cm", "centimeter", "meter", "mile", "second", "minute", "hour", "day", "week", "month",
          "year", "foot", "feet", "inch", "yard")
# fmt: on
_UNIT_RE = re.compile(r"(?<![a-z])(?:" + "|".join(_UNITS) + r")(?:es)?s? *(?:\^[0-9]+)?")
_THOUSANDS_RE = re.compile(r"(\d),(\d\d\d)($|\D)")
_SCALE_WORDS = {"million": "*10^6", "billion": "*10^9", "trillion": "*10^12"}


def normalize_sympy(answer: str) -> str:
    """PRM800K-style normalisation into plain text a sympy parser can read (docs/method.md §6.1 step 3b)."""
    s = _strip_text_wrapper(answer.strip())
    s = s.replace("\\%", "%").replace("\\$", "$").replace("$", "").replace("%", "")
    s = s.replace(" or ", " , ").replace(" and ", " , ")
    s = _apply_scale_words(s)
    s = _UNIT_RE.sub("", s)
    s = re.sub(r"\^ *\\circ", "", s)
    if len(s) > 1 and s[0] == "{" and s[-1] == "}":
        s = s[1:-1]
    s = re.sub(r",\\! *", "", s)
    s = _int_if_integral(s)
    if "\\" in s:
        s = latex_to_text(s)
    s = re.sub(r"- *", "-", s)
    s = re.sub(r"([0-9]) +([0-9])", r"\1+\2", s)  # mixed number "7 3/4" -> "7+3/4"
    s = s.replace(" ", "").replace("{", "").replace("}", "").lower()
    return _int_if_integral(_strip_thousands_commas(s))


def _apply_scale_words(s: str) -> str:
    """Scale words: "5 million" -> "5000000" (so it stays an integer), "x million" -> "x*10^6"."""
    for word, factor in _SCALE_WORDS.items():
        s = re.sub(rf"(\d+(?:\.\d+)?) *{word}", functools.partial(_scaled, factor=factor), s)
        s = s.replace(word, factor)
    return s


def _scaled(match: re.Match[str], *, factor: str) -> str:
    number = match[1]
    value = Fraction(number) * 10 ** int(factor.rsplit("^", 1)[1])
    return str(value.numerator) if value.denominator == 1 else number + factor


def _strip_thousands_commas(s: str) -> str:
    while (t := _THOUSANDS_RE.sub(r"\1\2\3", s)) != s:
        s = t
    return s


def _int_if_integral(s: str) -> str:
    """ "3.0" -> "3" and "1,000" -> "1000"; anything else unchanged."""
    try:
        x = float(_strip_thousands_commas(s))
    except ValueError:
        return s
    if x != x or abs(x) == float("inf") or abs(x - round(x)) > 1e-7:
        return s
    return str(round(x))


_TEXT_MACROS = {"text", "textbf", "textit", "mathrm", "mathbf", "mathit", "operatorname", "mbox", "boxed"}
# fmt: off
_SYMBOLS = {
    "cdot": "*", "times": "*", "div": "/", "pi": "pi", "infty": "inf", "cup": "U",
    "leq": "<=", "le": "<=", "geq": ">=", "ge": ">=", "neq": "!=", "ne": "!=",
    "{": "{", "}": "}", ",": " ", ";": " ", ":": " ", "!": "", " ": " ", "quad": " ", "qquad": " ",
    "left": "", "right": "", "circ": "", "%": "", "$": "",
}
# fmt: on
_COMMAND_RE = re.compile(r"\\([a-zA-Z]+|.)", re.DOTALL)


def latex_to_text(s: str) -> str:
    """A small LaTeX -> plain-text converter (``\\frac{a}{b}`` -> ``a/b``, ``\\sqrt{x}`` -> ``sqrt(x)``).

    It stands in for pylatexenc, which the released grader used: only the constructs found in final
    answers are handled; other commands lose their backslash and braces are kept for the caller.
    """
    s = s.replace("\\tfrac", "\\frac").replace("\\dfrac", "\\frac")
    out: list[str] = []
    i = 0
    while i < len(s):
        if s[i] == "^" and s.startswith("{", i + 1):
            group, i = _read_argument(s, i + 1)
            text = latex_to_text(group or "")
            # "x^{10}" stays "x^10"; "2^{x+1}" becomes "2^(x+1)", which the symbolic step declines
            out.append("^" + (text if len(text) <= 1 or text.isdigit() else f"({text})"))
            continue
        if s[i] != "\\":
            out.append(s[i])
            i += 1
            continue
        m = _COMMAND_RE.match(s, i)
        name = m.group(1) if m else ""
        i = m.end() if m else i + 1
        if name == "frac":
            num, i = _read_argument(s, i)
            den, i = _read_argument(s, i)
            out.append(_render_fraction(latex_to_text(num or ""), latex_to_text(den or "")))
        elif name == "sqrt":
            arg, i = _read_argument(s, i)
            out.append(f"sqrt({latex_to_text(arg or '')})")
        elif name in _TEXT_MACROS:
            arg, i = _read_argument(s, i)
            out.append(latex_to_text(arg or ""))
        else:
            out.append(_SYMBOLS.get(name, name))
    return "".join(out).strip()


def _read_argument(s: str, i: int) -> tuple[str | None, int]:
    """A command argument starting at ``i``: a braced group or one character (spaces skipped)."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return None, i
    if s[i] != "{":
        return s[i], i + 1
    end = _matching_brace(s, i)
    if end < 0:
        return s[i + 1 :], len(s)
    return s[i + 1 : end], end + 1


def _render_fraction(num: str, den: str) -> str:
    atomic = re.compile(r"-?[0-9a-zA-Z.]+")
    num = num if atomic.fullmatch(num) else f"({num})"
    den = den if atomic.fullmatch(den) else f"({den})"
    return f" {num}/{den}"  # the leading space keeps "7\\frac34" a mixed number: "7 3/4"


# --------------------------------------------------------------------------------------------
# (c) element-wise comparison

_TUPLE_CHARS = "()[]"
_FRACTION_RE = re.compile(r"-?[0-9]+.?/0*[1-9][0-9]*.?")
_NUMBER_RE = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:/-?\d+)?")
_EVAL_SAFE_RE = re.compile(r"[0-9a-z+\-*/^().,! ]*")
# Exponents sympy could spend minutes on inside one uninterruptible C call (9**9**9, 2^-99999999):
# only a single digit or letter may follow "^", never a group, a sign, a tower or a factorial.
_RISKY_RE = re.compile(r"\*\*|\^[^0-9a-z]|\^[0-9]+\^|\^[0-9][0-9]+|!")


def split_tuple(s: str) -> list[str]:
    """Elements of ``(a,b)`` / ``[a,b)``…; anything else (also nested brackets) is one element."""
    s = _strip_thousands_commas(s)
    if not s:
        return []
    inner = s[1:-1]
    bracketed = len(s) > 2 and s[0] in _TUPLE_CHARS and s[-1] in _TUPLE_CHARS
    if bracketed and not any(c in inner for c in _TUPLE_CHARS):
        return [e.strip() for e in inner.split(",")]
    return [s]


def answers_match(given: str, truth: str) -> bool:
    """Whether a model's answer equals the ground truth (docs/method.md §6.1 step 3; see module docstring)."""
    try:
        return _answers_match(given, truth)
    except Exception:  # garbage in must never crash a training step
        return False


def _answers_match(given: str, truth: str) -> bool:
    if not given.strip() or not truth.strip():
        return False
    if normalize_mathd(given) == normalize_mathd(truth):
        return True
    given_n, truth_n = normalize_sympy(given), normalize_sympy(truth)
    if given_n == truth_n:
        return True
    if not given_n:
        return False
    truth_elems, given_elems = split_tuple(truth_n), split_tuple(given_n)
    if len(truth_elems) != len(given_elems):
        return False
    # The bracket check takes the model's answer as reference as in the released code (docs/method.md §6.1
    # step 4); with both brackets compared it is symmetric anyway.
    if len(truth_elems) > 1 and (truth_n[0], truth_n[-1]) != (given_n[0], given_n[-1]):
        return False
    return all(_elements_match(g, t) for g, t in zip(given_elems, truth_elems, strict=True))


def _elements_match(given: str, truth: str) -> bool:
    if _FRACTION_RE.fullmatch(given) and _FRACTION_RE.fullmatch(truth):
        return given == truth  # an unreduced fraction is not the answer
    if _is_integer_text(given) != _is_integer_text(truth):
        return False
    g, t = _as_fraction(given), _as_fraction(truth)
    if g is not None and t is not None:
        return g == t
    return symbolic_equal(given, truth)


def _is_integer_text(s: str) -> bool:
    try:
        x = float(_strip_thousands_commas(s))
    except ValueError:
        return False
    return x == x and abs(x) != float("inf") and abs(x - round(x)) <= 1e-7


def _as_fraction(s: str) -> Fraction | None:
    """Exact value of a plain number ("3", "-0.25", "7/8"), else None."""
    if not _NUMBER_RE.fullmatch(s):
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def allows_symbolic(expr: str) -> bool:
    """Whether sympy may try ``expr``: few unknowns, safe characters, no exponent towers."""
    if len(expr) > MAX_SYMBOLIC_CHARS or not _EVAL_SAFE_RE.fullmatch(expr):
        return False  # sympy's parser evaluates Python: only arithmetic characters may reach it
    letters = {c for c in expr.replace("sqrt", "").replace("frac", "") if c.isalpha()}
    return len(letters) <= 2 and not _RISKY_RE.search(expr)


def symbolic_equal(given: str, truth: str) -> bool:
    """sympy parse of both normalised texts, then ``math_verify.verify``; False on any failure."""
    if not (allows_symbolic(given) and allows_symbolic(truth)):
        return False
    parse, verify = _symbolic_backend()  # imported and warmed up before the clock starts
    try:
        return run_with_time_limit(lambda: verify(parse(truth), parse(given)), SYMBOLIC_TIME_LIMIT)
    except Exception:
        return False


@functools.cache
def _symbolic_backend() -> tuple[Callable[[str], Any], Callable[[Any, Any], bool]]:
    """The parser and comparer of the symbolic step, imported lazily and warmed up once.

    sympy's first simplification in a process takes about a second of cache building; that must
    not count against :data:`SYMBOLIC_TIME_LIMIT` (nor an import be interrupted half-way).
    """
    import math_verify.grader
    from sympy.parsing import sympy_parser

    transformations = (
        *sympy_parser.standard_transformations,
        sympy_parser.implicit_multiplication_application,
    )

    def parse(text: str) -> Any:
        return sympy_parser.parse_expr(text.replace("^", "**"), transformations=transformations)

    def verify(gold: Any, target: Any) -> bool:
        # run_with_time_limit guards this call, so math-verify's own signal-based limit stays off:
        # it would cancel our timer, and it refuses to run outside the main thread. That makes its
        # one-time "timeout is disabled" warning moot, so it is marked as shown.
        math_verify.grader.TIMEOUT_WARNING_SHOWN = True
        return bool(math_verify.grader.verify(gold, target, timeout_seconds=None, raise_on_error=False))

    verify(parse("(x+1)**2"), parse("x**2+2*x+1"))
    return parse, verify


def run_with_time_limit(fn: Callable[[], T], seconds: float) -> T:
    """Call ``fn``, raising TimeoutError after ``seconds``.

    Uses SIGALRM, so the limit applies only in the main thread; elsewhere ``fn`` runs unguarded and
    :func:`allows_symbolic` is the only protection. An alarm already set by the caller (e.g.
    pytest-timeout) is re-armed with its remaining time afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        return fn()

    def on_alarm(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"symbolic comparison took more than {seconds} s")

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay > 0:
            signal.setitimer(signal.ITIMER_REAL, max(previous_delay - (time.monotonic() - started), 1e-3))


# --------------------------------------------------------------------------------------------
# Rewards


def math_reward(response: str, answer: str, *, require_think: bool = False) -> float:
    """1.0 when the response's boxed answer equals ``answer`` (docs/method.md §6.1), else 0.0. Never raises."""
    try:
        text = final_text(response, require_think=require_think)
        given = boxed_answer(text) if text is not None else None
    except Exception:
        return 0.0
    return float(given is not None and answers_match(given, str(answer)))


_LETTER_RE = re.compile(r"(?:option|answer|choice)?\s*\(?([A-Za-z])\)?(?:[.:)\s].*)?", re.I | re.DOTALL)
_WRAPPER_RE = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|mathit|textit)\s*\{(.*)\}$", re.DOTALL)


def choice_letter(boxed: str) -> str | None:
    """The upper-case option letter in a boxed answer: ``(B)``, ``b``, ``\\text{B}``, ``B. Paris``."""
    s = boxed.strip().replace("$", "")
    for _ in range(3):  # unwrap \text{\textbf{B}}
        s = _WRAPPER_RE.sub(r"\1", s.strip())
    m = _LETTER_RE.fullmatch(s.strip())
    return m.group(1).upper() if m else None


def choice_reward(response: str, answer_letter: str, *, require_think: bool = False) -> float:
    """1.0 when the boxed option letter equals ``answer_letter`` (docs/method.md §6.2, §13 Q10), else 0.0."""
    try:
        text = final_text(response, require_think=require_think)
        boxed = boxed_answer(text) if text is not None else None
        letter = choice_letter(boxed) if boxed is not None else None
    except Exception:
        return 0.0
    return float(letter is not None and letter == answer_letter.strip().upper())
