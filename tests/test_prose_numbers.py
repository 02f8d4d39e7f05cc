"""The check that a notebook's prose carries only numbers its run shows (tests/prose_numbers.py)."""
from prose_numbers import unbacked_numbers


def _nb(markdown, code="", output="", metadata=None):
    return {"cells": [{"cell_type": "markdown", "id": "m", "source": markdown},
                      {"cell_type": "code", "id": "c", "source": code, "metadata": {"tags": ["parameters"]} if metadata is None else metadata,
                       "outputs": [{"output_type": "stream", "name": "stdout", "text": output}]}]}


def test_a_number_the_run_prints_is_backed_even_rounded():
    assert unbacked_numbers(_nb("test AUC 0.98 on the demo", output="test AUC 0.982\n")) == []
    assert unbacked_numbers(_nb("flags 43 % of real faces", output="FP area 0.428\n")) == []


def test_a_number_nothing_shows_is_reported():
    bad = unbacked_numbers(_nb("it printed 0.98 and 0.79", output="AUC 0.982, 0.820\n"))
    assert len(bad) == 1 and "0.79" in bad[0]
    assert unbacked_numbers(_nb("blur of 1.5 px", code="x = 1\n"))


def test_parameters_and_citations_back_a_number():
    assert unbacked_numbers(_nb("a threshold of 0.05", code="THRESHOLD = 0.05\n")) == []
    assert unbacked_numbers(_nb("ratio 0.2 in their code (Gao et al., 2021)")) == []
    assert unbacked_numbers(_nb("AUC 0.929 (DeeperForensics, 2020)")) == []
    assert unbacked_numbers(_nb("AUC 0.929 on FF++\n\nas Gao et al. say")), "a citation covers its paragraph only"
    assert unbacked_numbers(_nb("Q. A head scores 0.95 (made-up numbers). Why?")) == []


def test_code_backs_a_number_only_in_the_parameters_or_an_exercise():
    prose = "a blur of 1.5 px"
    assert unbacked_numbers(_nb(prose, code="sigma = 1.5\n", metadata={})), "an ordinary cell's code shows nothing"
    assert unbacked_numbers(_nb(prose, code="SIGMA = 1.5\n")) == []  # the parameters cell
    assert unbacked_numbers(_nb(prose, code="s = 1.5\n", metadata={"nbgrader": {"solution": True}})) == []
    assert unbacked_numbers(_nb(prose, code="sigma = 1.5\n", output="sigma 1.5\n", metadata={})) == []
