"""Every setting a role offers is documented and checked by its argument spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = sorted(p for p in (Path(__file__).resolve().parents[1] / "roles").iterdir() if p.is_dir())


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_default_has_a_documented_spec(role: Path) -> None:
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = specs["main"]["options"]
    assert set(defaults) == set(options)
    for name, option in options.items():
        assert name.startswith(role.name + "_"), name
        assert option.get("description"), name
        assert option.get("type"), name
    # The preflight play checks each provisioning role through its 'validate' entry point,
    # which must be the same spec.
    if (role / "tasks" / "validate.yml").exists():
        assert specs["validate"] == specs["main"]
