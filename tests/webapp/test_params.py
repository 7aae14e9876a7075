"""Query-string parameters are read one way: empty means the default, anything malformed names itself."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from webapp.http.params import ParamError, bool_param, int_param, or_default


def test_an_absent_or_empty_integer_is_the_default() -> None:
    assert int_param(QueryDict(""), "step", 7) == 7
    assert int_param(QueryDict("step="), "step") is None
    assert int_param(QueryDict("step=12"), "step") == 12


@pytest.mark.parametrize(("query", "message"), [("n=1.5", "integer"), ("n=0", "between 1 and 9"), ("n=10", "between")])
def test_it_rejects_a_malformed_or_out_of_range_integer_naming_it(query: str, message: str) -> None:
    with pytest.raises(ParamError, match=message) as err:
        int_param(QueryDict(query), "n", minimum=1, maximum=9)
    assert err.value.field == "n"


def test_booleans_take_the_one_word_list() -> None:
    assert [bool_param(QueryDict(f"t={w}"), "t") for w in ("1", "on", "YES", "false", "off")] == [
        True, True, True, False, False,
    ]  # fmt: skip
    with pytest.raises(ParamError, match="t must be a boolean"):
        bool_param(QueryDict("t=maybe"), "t")


def test_a_permalink_reads_a_malformed_value_as_its_default() -> None:
    assert or_default(int_param, QueryDict("compare=abc"), "compare", None) is None
    assert or_default(bool_param, QueryDict("heat=maybe"), "heat", True) is True
