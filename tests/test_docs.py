"""The examples in the docstrings of the functions users call from a notebook run and hold."""

import doctest

import pytest

from morphoprof import families, illumination, metadata, profiles, scoring, training


@pytest.mark.parametrize(
    "module", [families, illumination, metadata, profiles, scoring, training], ids=lambda m: m.__name__
)
def test_docstring_examples_hold(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
