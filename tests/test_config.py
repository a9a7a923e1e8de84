import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from morphoprof import families, features, measurement, profiles, screen
from morphoprof.metadata import InputError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "config.schema.yaml"
SHIPPED = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_the_shipped_config_is_valid():
    screen.check_config(SHIPPED, SCHEMA)


@pytest.mark.parametrize(
    "block,key,value,message",
    [
        ("features", "backbnoe", "resnet50", r"config features: Additional properties are not allowed \('backbnoe'"),
        ("simulate", "plates", 0, r"config simulate.plates: 0 is less than the minimum of 1"),
        ("features", "precision", "fp8", r"config features.precision: 'fp8' is not one of"),
    ],
)
def test_a_config_fault_is_one_line_naming_the_key(block, key, value, message):
    config = copy.deepcopy(SHIPPED)
    config[block][key] = value
    with pytest.raises(InputError, match=message) as err:
        screen.check_config(config, SCHEMA)
    assert "\n" not in str(err.value)


def _choices(*keys: str) -> list:
    schema = yaml.safe_load(SCHEMA.read_text())
    for key in keys:
        schema = schema["items"] if key == "items" else schema["properties"][key]
    return schema["enum"]


@pytest.mark.parametrize(
    ("keys", "names"),
    [
        (("features", "backbone"), families.BACKBONES),
        (("features", "precision"), ("auto", *features.PRECISIONS)),
        (("features", "level"), tuple(families.LEVELS)),
        (("features", "weights"), families.WEIGHTS),
        (("features", "train", "protocol"), families.PROTOCOLS),
        (("profiles", "normalization"), profiles.NORMALIZATIONS),
        (("profiles", "aggregate"), profiles.AGGREGATES),
        (("features", "cellprofiler", "items"), measurement.CELLPROFILER_MEASUREMENTS),
    ],
)
def test_the_schema_offers_what_the_code_knows(keys, names):
    assert _choices(*keys) == list(names)


def test_parsing_the_workflow_never_imports_torch():
    """What the rules import while Snakemake parses them (every SLURM job parses the workflow too)
    leaves torch and Cellpose unimported: the planning facts live in light modules."""
    imports = [line for line in (ROOT / "rules" / "common.smk").read_text().splitlines() if "import" in line]
    snakefile = [line for line in (ROOT / "Snakefile").read_text().splitlines() if line.startswith("from morphoprof")]
    code = "\n".join([*imports, *snakefile, "import sys", "print(sorted({'torch', 'cellpose'} & set(sys.modules)))"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert any("from morphoprof import" in line for line in imports)
    assert result.stdout.strip() == "[]"


def test_every_gpu_rule_is_sent_to_the_gpu_partition():
    """The SLURM profile names the GPU partition for exactly the rules that declare a GPU: one left
    out would be submitted to the CPU partition with --gpus=1, and wait there."""
    rules = {}
    for smk in (ROOT / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", smk.read_text(), re.M | re.S):
            rules[name] = body
    declared = {name for name, body in rules.items() if re.search(r"^\s+gpu=1,", body, re.M)}
    assert {"segment_plate", "train_features"} <= declared
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    gpu_partition = profile["set-resources"]["segment_plate"]["slurm_partition"]
    sent = {rule for rule, res in profile["set-resources"].items() if res.get("slurm_partition") == gpu_partition}
    assert sent == declared
