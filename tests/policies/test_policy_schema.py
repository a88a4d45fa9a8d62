"""Policy files: strict validation, explanations, hashing, extends/overrides."""

from __future__ import annotations

import hashlib

import pytest

from caption_agent.errors import PolicyError
from caption_agent.policies.schema import default_policy_path, load_policy, merge


def write(tmp_path, text: str):
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_policy_loads_with_version_and_hash_of_its_bytes():
    loaded = load_policy()
    assert loaded.version == "2026.12.1"
    assert loaded.hash == hashlib.sha256(default_policy_path().read_bytes()).hexdigest()
    assert loaded.base_rules.pii.action == "redact"
    # per-preset override merged: alt_text appends openings, seo_product sends invented claims to review
    assert "screenshot of" in loaded.rules_for("alt_text").style.extra_banned_openings
    assert loaded.rules_for("seo_product").grounding.on_exhausted == "review"
    assert loaded.rules_for("unknown_preset") == loaded.base_rules


def test_misspelt_key_is_an_error_with_line_and_suggestion(tmp_path):
    path = write(tmp_path, 'version: "1"\nextends: default\nrules:\n  pii:\n    actoin: block\n')
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    msg = str(err.value)
    assert "rules.pii.actoin (line 5)" in msg
    assert "did you mean 'action'?" in msg


def test_misspelt_rule_name_and_bad_values_are_all_listed(tmp_path):
    path = write(
        tmp_path,
        'version: "1"\nextends: default\nrules:\n  blocklst: {terms: [x]}\n'
        "  pii: {detect: [email, ssn]}\n  language: {action: redact}\n",
    )
    msg = str(pytest.raises(PolicyError, load_policy, path).value)
    assert "unknown key 'blocklst'; did you mean 'blocklist'?" in msg
    assert "rules.pii.detect.1" in msg and "'ssn'" in msg
    assert "rules.language.action" in msg


def test_duplicate_keys_are_refused(tmp_path):
    path = write(tmp_path, 'version: "1"\nextends: default\nrules:\n  pii: {}\n  pii: {enabled: false}\n')
    with pytest.raises(PolicyError, match="duplicate key 'pii'"):
        load_policy(path)


def test_a_policy_without_extends_must_name_every_rule(tmp_path):
    path = write(tmp_path, 'version: "1"\nrules:\n  pii: {}\n')
    msg = str(pytest.raises(PolicyError, load_policy, path).value)
    assert "rules.blocklist" in msg and "required key is missing" in msg


def test_rules_that_would_do_nothing_are_refused(tmp_path):
    path = write(
        tmp_path,
        'version: "1"\nextends: default\nrules:\n  blocklist:\n    terms: []\n'
        "    topics: {medical_claims: [], counterfeit: [], spam: []}\n",
    )
    with pytest.raises(PolicyError, match="would do nothing"):
        load_policy(path)
    path = write(tmp_path, 'version: "1"\nextends: default\nrules:\n  pii: {detect: []}\n')
    with pytest.raises(PolicyError, match="would do nothing"):
        load_policy(path)


def test_redact_is_refused_for_rules_that_cannot_edit_text(tmp_path):
    path = write(tmp_path, 'version: "1"\nextends: default\nrules:\n  confidence: {on_draft: redact}\n')
    with pytest.raises(PolicyError, match="confidence.on_draft"):
        load_policy(path)


def test_unknown_nudenet_class_is_refused(tmp_path):
    path = write(tmp_path, 'version: "1"\nextends: default\nrules:\n  image_safety: {block_classes: [NUDITY]}\n')
    with pytest.raises(PolicyError, match="unknown NudeNet classes"):
        load_policy(path)


def test_preset_override_errors_name_the_preset(tmp_path):
    path = write(
        tmp_path,
        'version: "1"\nextends: default\npresets:\n  alt_text:\n    rules:\n'
        "      style: {max_chars: 20}\n      grounding: {kind: [colour]}\n",
    )
    msg = str(pytest.raises(PolicyError, load_policy, path).value)
    assert "presets.alt_text.rules.style.max_chars" in msg
    assert "did you mean 'kinds'?" in msg


def test_extends_appends_with_plus_and_hashes_both_files(tmp_path):
    text = 'version: "site-2"\nextends: default\nrules:\n  blocklist:\n    terms+: [darn]\n'
    path = write(tmp_path, text)
    loaded = load_policy(path)
    terms = loaded.base_rules.blocklist.terms
    assert terms[-1] == "darn" and "bullshit" in terms
    assert loaded.version == "site-2"
    base = default_policy_path().read_bytes()
    assert loaded.hash == hashlib.sha256(base + b"\n# extended by\n" + text.encode()).hexdigest()


def test_merge_semantics():
    base = {"a": {"x": 1, "l": [1, 2]}, "b": [1]}
    assert merge(base, {"a": {"l+": [2, 3]}, "b": [9]}) == {"a": {"x": 1, "l": [1, 2, 3]}, "b": [9]}
    assert base == {"a": {"x": 1, "l": [1, 2]}, "b": [1]}  # not mutated


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(write(tmp_path, "version: [unclosed\n"))
