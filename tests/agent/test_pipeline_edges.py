"""One behaviour everywhere: defaults for requests, per-item failures, unknown skus, early provenance, CLI errors."""

from importlib import resources

import pytest
import yaml
from typer.testing import CliRunner

from caption_agent import AgentConfig, CaptionAgent, CaptionRequest
from caption_agent.errors import UnknownSkuError

pytestmark = pytest.mark.slow


@pytest.fixture()
def agent_none(lite_drafter, catalog_dir, embedder):
    """Lite drafter, the real catalog, no refiner: cheap enough to build per test."""
    agent = CaptionAgent(
        AgentConfig.load(
            retrieval={"catalog_dir": catalog_dir},
            refiner={"backend": "none"},
            default_style="social",
            default_locale="en-GB",
        ),
        drafter=lite_drafter,
        embedder=embedder,
    )
    yield agent
    agent.close()


def test_requests_without_style_or_locale_get_the_config_defaults(agent_none, images_dir):
    plain, explicit = agent_none.caption_batch(
        [
            CaptionRequest(image=images_dir / "coffee.jpg"),
            CaptionRequest(image=images_dir / "coffee.jpg", style="alt_text", locale="en-US"),
        ]
    )
    assert (plain.style, plain.locale) == ("social", "en-GB")
    assert (explicit.style, explicit.locale) == ("alt_text", "en-US")
    runnable = agent_none.as_runnable().invoke(CaptionRequest(image=images_dir / "coffee.jpg"))
    assert (runnable.style, runnable.locale) == ("social", "en-GB")


class _Flaky:
    """Wraps a real stage and raises for one image: a fault the real parts cannot produce on demand."""

    def __init__(self, inner, bad_width):
        self.inner, self.bad_width = inner, bad_width
        self.name, self.model_id = getattr(inner, "name", "x"), getattr(inner, "model_id", "")

    def rank(self, candidates, image):
        if image.width == self.bad_width:
            raise RuntimeError("ranker crashed on this image")
        return self.inner.rank(candidates, image)


def test_a_ranking_crash_fails_that_item_only(agent_none, lite_drafter, images_dir):
    agent = CaptionAgent(
        agent_none.config,
        drafter=lite_drafter,
        retriever=agent_none.retriever,
        ranker=_Flaky(agent_none.ranker, bad_width=600),
    )  # coffee.jpg is 600x400
    cat, coffee = agent.caption_batch([images_dir / "chelsea.jpg", images_dir / "coffee.jpg"])
    assert cat.status in ("ok", "review") and cat.text
    assert coffee.status == "error" and coffee.error.stage == "rank" and "crashed" in coffee.error.message
    assert coffee.provenance.policy_version and coffee.provenance.prompt_hash


def test_a_grounding_crash_fails_that_item_only(agent_none, images_dir):
    from caption_agent.retrieval import FactRetriever

    real = agent_none.retriever

    class Broken(FactRetriever):  # the declared retriever contract, with a store that fails
        store = real.store

        def facts_many(self, pairs):
            raise RuntimeError("batch query failed")

        def facts(self, query, hint):
            if hint.brand == "boom":
                raise RuntimeError("store fell over")
            return real.facts(query, hint)

    agent = CaptionAgent(agent_none.config, drafter=agent_none.drafter, ranker=agent_none.ranker, retriever=Broken())
    reqs = [
        CaptionRequest(image=images_dir / "coffee.jpg", style="seo_product"),
        CaptionRequest(image=images_dir / "coffee.jpg", style="seo_product", hint={"brand": "boom"}),
    ]
    ok, failed = agent.caption_batch(reqs)
    assert ok.status in ("ok", "review") and ok.facts
    assert failed.status == "error" and failed.error.stage == "ground" and "fell over" in failed.error.message


def test_unknown_sku_is_the_same_error_in_api_and_batch(agent_none, images_dir):
    with pytest.raises(UnknownSkuError, match="NO-SUCH-SKU") as err:
        agent_none.caption(images_dir / "coffee.jpg", sku="NO-SUCH-SKU")
    assert "Fix:" in str(err.value)
    known, unknown = agent_none.caption_batch(
        [
            CaptionRequest(image=images_dir / "coffee.jpg", style="seo_product", hint={"sku": "MUG-001"}),
            CaptionRequest(image=images_dir / "coffee.jpg", style="seo_product", hint={"sku": "NO-SUCH-SKU"}),
        ]
    )
    assert known.status in ("ok", "review") and {f.sku for f in known.facts} == {"MUG-001"}
    assert unknown.status == "error" and unknown.error.type == "UnknownSkuError" and unknown.error.stage == "input"


def test_per_preset_image_safety_override_reaches_the_screen(tmp_path, lite_drafter, images_dir):
    pytest.importorskip("nudenet")
    policy = yaml.safe_load((resources.files("caption_agent.policies") / "default.yaml").read_text(encoding="utf-8"))
    # Only for `social`: any face the detector sees blocks (a policy knob the default never turns).
    policy["presets"].setdefault("social", {}).setdefault("rules", {})["image_safety"] = {
        "block_classes": ["FACE_FEMALE", "FACE_MALE"],
        "block_score": 0.3,
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    agent = CaptionAgent(AgentConfig.load(refiner={"backend": "none"}, policy={"file": path}), drafter=lite_drafter)
    alt, social = agent.caption_batch(
        [
            CaptionRequest(image=images_dir / "grace_hopper.jpg", style="alt_text"),
            CaptionRequest(image=images_dir / "grace_hopper.jpg", style="social"),
        ]
    )
    assert alt.status != "blocked"
    assert social.status == "blocked" and social.decisions[0].rule == "image_safety"
    assert social.provenance.policy_hash and social.provenance.prompt_version.startswith("social@")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--refiner", "bogus"], "unknown refiner backend 'bogus'"),
        (["--drafter", "nope"], "unknown drafter backend 'nope'"),
        (["--n", "0"], "Invalid value for '--n'"),
        (["--locale", "xx-QQ"], "xx-QQ"),
    ],
)
def test_bad_cli_options_print_a_clear_error(args, needle, images_dir):
    from caption_agent.cli import app

    out = CliRunner().invoke(app, ["caption", str(images_dir / "coffee.jpg"), *args])
    text = out.stdout + (out.stderr or "")
    assert out.exit_code in (1, 2) and needle in text and "Traceback" not in text


def test_a_missing_prompts_folder_is_a_clear_error():
    from caption_agent.cli import app

    out = CliRunner().invoke(app, ["styles", "--prompts-dir", "/no/such/folder"])
    assert out.exit_code == 2 and "prompts folder '/no/such/folder' does not exist" in out.stderr


def test_people_the_screen_counts_are_the_subject_of_the_drafts(lite_drafter, images_dir):
    pytest.importorskip("nudenet")
    agent = CaptionAgent(AgentConfig.load(refiner={"backend": "none"}), drafter=lite_drafter)
    portrait, cat = agent.caption_batch([images_dir / "astronaut.jpg", images_dir / "chelsea.jpg"])
    assert portrait.image.faces == 1 and cat.image.faces == 0  # one person signal, recorded once per image
    assert all("person" in c.text.lower() for c in portrait.candidates)
    assert not any(w in portrait.draft.lower().split() for w in ("man", "woman", "he", "she"))
    assert not any("person" in c.text.lower() for c in cat.candidates)
    people = next(d for d in portrait.decisions if d.rule == "people")
    assert people.action in ("allow", "redact") and "not checked" not in people.reason
