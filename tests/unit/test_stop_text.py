"""Stop sequences over a stream of text deltas (runtime/text/generate.StopText) and their option."""

from __future__ import annotations

import pytest

from edge.errors import InputError
from edge.options import GenerateOptions
from edge.runtime.text.generate import StopText


def run(stops, deltas):
    st = StopText(stops)
    shown = [st.push(d) for d in deltas]
    return shown, st.stopped, st.flush()


def test_text_before_a_stop_split_over_deltas_is_shown_and_nothing_after():
    shown, stopped, rest = run(["END"], ["Hello E", "N", "D and more"])
    assert shown == ["Hello ", "", ""] and stopped and rest == ""


def test_a_held_back_prefix_that_is_no_stop_is_released():
    shown, stopped, rest = run(["ENDS"], ["a EN", "x", "b END"])
    assert "".join(shown) + rest == "a ENxb END" and not stopped
    assert shown[0] == "a "  # "EN" waited for the next delta


def test_the_earliest_of_several_stops_wins_and_no_stops_passes_through():
    assert run(["b", "a"], ["xyab"])[:2] == (["xy"], True)
    assert run([], ["a", "b"]) == (["a", "b"], False, "")


@pytest.mark.parametrize("bad", ["END", [""], [3], ("ok", None)])
def test_stop_option_must_be_non_empty_strings(bad):
    with pytest.raises(InputError):
        GenerateOptions(stop=bad)
    assert GenerateOptions(stop=["a", "b"]).stop == ("a", "b")
