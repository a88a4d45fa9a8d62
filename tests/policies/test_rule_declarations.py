"""A policy rule is one module: the registry, the schema's rule names and settings, and the run order all come
from the rule's own declaration (docs/policies.md, "Adding a rule")."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from caption_agent.policies.rules import base
from caption_agent.policies.rules.base import RULES, rule_classes
from caption_agent.policies.schema import RulesConfig

SHOUTING = textwrap.dedent(
    '''
    """A caption in capitals reads as shouting to a screen reader user."""

    from pydantic import Field

    from caption_agent.policies.rules.base import Rule, RuleConfig


    class ShoutingConfig(RuleConfig):
        max_caps_ratio: float = Field(0.5, ge=0, le=1, description="Most capital letters among letters.")


    class ShoutingRule(Rule):
        name = "shouting"
        config_model = ShoutingConfig
        order = 85  # after style (80), before coherence (90)
        stages = frozenset({"output"})
        config: ShoutingConfig

        def check_output(self, text, ctx):
            letters = [c for c in text if c.isalpha()]
            ratio = sum(c.isupper() for c in letters) / max(len(letters), 1)
            if ratio > self.config.max_caps_ratio:
                return self.violation(text, None, f"{ratio:.0%} of the letters are capitals", ctx)
            return self.allow(text, "not shouting")
    '''
)

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import caption_agent.policies.rules as rules
    rules.__path__.append(sys.argv[1])  # the new module sits beside the bundled rules
    from caption_agent.errors import PolicyError
    from caption_agent.policies import ModerationContext, PolicyEngine
    from caption_agent.policies.schema import RulesConfig
    from caption_agent.prompts import load_preset

    out = {"names": list(RulesConfig.model_fields)}
    engine = PolicyEngine.load()  # the bundled default, which does not list the new rule
    ctx = ModerationContext(preset=load_preset("alt_text"), locale="en-US", draft="a red mug on a table")
    for text in ("A RED MUG ON A TABLE.", "A red mug on a table."):
        outcome = engine.review(text, ctx)
        out[text] = [(d.action, d.reason) for d in outcome.decisions if d.rule == "shouting"]
    tuned = PolicyEngine.load(sys.argv[2])  # extends default, sets the rule's own key
    out["tuned"] = [d.action for d in tuned.review("A RED MUG ON A TABLE.", ctx).decisions if d.rule == "shouting"]
    for bad in sys.argv[3:]:
        try:
            PolicyEngine.load(bad)
        except PolicyError as exc:
            out[bad] = str(exc)
    print(json.dumps(out))
    """
)


def test_a_new_rule_is_one_module(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "shouting.py").write_text(SHOUTING, encoding="utf-8")
    tuned = tmp_path / "tuned.yaml"
    tuned.write_text("version: t1\nextends: default\nrules:\n  shouting:\n    max_caps_ratio: 1.0\n")
    misspelt = tmp_path / "misspelt.yaml"
    misspelt.write_text("version: t2\nextends: default\nrules:\n  shouting:\n    max_caps: 0.2\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("version: t3\nextends: default\npresets:\n  alt_text:\n    rules:\n      shoutin: {}\n")
    run = subprocess.run(
        [sys.executable, "-P", "-c", SCRIPT, str(rules_dir), str(tuned), str(misspelt), str(unknown)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.splitlines()[-1])
    names = out["names"]
    assert names.index("style") + 1 == names.index("shouting") == names.index("coherence") - 1  # its order
    # It runs under the bundled policy with its settings' defaults: shouting is held, a normal caption passes.
    assert out["A RED MUG ON A TABLE."] == [["review", "100% of the letters are capitals"]]
    assert out["A red mug on a table."] == [["allow", "not shouting"]]
    assert out["tuned"] == ["allow"]  # a policy file sets its keys like any rule's
    assert (
        "rules.shouting.max_caps (line 5): unknown key 'max_caps'; did you mean 'max_caps_ratio'?" in out[str(misspelt)]
    )
    assert "presets.alt_text.rules.shoutin" in out[str(unknown)] and "'shouting'" in out[str(unknown)]


def test_the_declarations_give_the_schema_and_the_run_order() -> None:
    classes = rule_classes()
    assert (
        [r.name for r in classes]
        == list(RulesConfig.model_fields)
        == sorted(RULES.names(), key=lambda n: RULES.get(n).order)
    )
    for rule in classes:
        field = RulesConfig.model_fields[rule.name]
        assert field.annotation is rule.config_model and field.is_required() == rule.required
    assert {r.name for r in classes if r.required} == {
        "image_safety",
        "injection",
        "pii",
        "blocklist",
        "people",
        "grounding",
        "style",
        "language",
        "confidence",
    }


def test_two_rules_with_one_name_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from caption_agent.policies import rules as package

    (tmp_path / "pii_again.py").write_text(
        "from caption_agent.policies.rules.base import Rule\n\nclass PiiAgain(Rule):\n    name = 'pii'\n"
    )
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    with pytest.raises(TypeError, match="two policy rules are named 'pii'"):
        base._declared_rules()
    monkeypatch.delitem(sys.modules, "caption_agent.policies.rules.pii_again")
