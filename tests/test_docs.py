"""The examples in the docstrings of the functions users call from a notebook run and hold; every
config key is documented; the manual's links lead somewhere."""

import doctest
import re
from pathlib import Path

import pytest
import yaml

from morphoprof import families, illumination, metadata, profiles, scoring, training

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "module", [families, illumination, metadata, profiles, scoring, training], ids=lambda m: m.__name__
)
def test_docstring_examples_hold(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def schema_keys(properties: dict, prefix: str = "") -> list[str]:
    """Every leaf key of a JSON schema's properties, dotted: ``features.train.protocol``, ..."""
    keys = []
    for name, spec in properties.items():
        if spec.get("type") == "object" and "properties" in spec:
            keys += schema_keys(spec["properties"], f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_every_config_key_is_documented():
    schema = yaml.safe_load((ROOT / "config/config.schema.yaml").read_text())
    keys = schema_keys(schema["properties"])
    assert "features.train.protocol" in keys and "segmentation.cells.model" in keys and len(keys) > 80
    page = (ROOT / "docs/configuration.md").read_text()
    documented = set(re.findall(r"^\| `([\w.]+)` \|", page, re.M))
    assert sorted(set(keys) - documented) == [], "schema keys without a row in docs/configuration.md"
    assert sorted(documented - set(keys)) == [], "docs/configuration.md rows of keys the schema does not have"


def test_a_key_added_to_the_schema_without_documentation_is_caught():
    schema = yaml.safe_load((ROOT / "config/config.schema.yaml").read_text())
    schema["properties"]["features"]["properties"]["train"]["properties"]["new_knob"] = {"type": "integer"}
    page = (ROOT / "docs/configuration.md").read_text()
    documented = set(re.findall(r"^\| `([\w.]+)` \|", page, re.M))
    assert set(schema_keys(schema["properties"])) - documented == {"features.train.new_knob"}


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_relative_links_lead_to_files(page):
    text = (ROOT / page).read_text()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (ROOT / page).parent.joinpath(target).exists(), f"{page}: link to {target}, which does not exist"
