"""The examples in the docstrings of the functions users call from a notebook run and hold; every
config key is documented; the manual's links lead somewhere."""

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest
import yaml

import morphoprof

ROOT = Path(__file__).resolve().parents[1]


MODULES = sorted(info.name for info in pkgutil.iter_modules(morphoprof.__path__))
WITH_EXAMPLES = {"families", "illumination", "images", "metadata", "profiles", "qc", "scoring", "training"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    """Every module's doctests run and hold; the modules of pure functions have some."""
    module = importlib.import_module(f"morphoprof.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0 or name not in WITH_EXAMPLES


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
