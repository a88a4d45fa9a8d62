"""The refiner chain: the primary backend, then its fallbacks in order, then (optionally) the ranked draft.

The chain only holds the links; the refine stage (``stages.refine``) walks it (each link refined, moderated and
regenerated on its own before the next is tried). Every link is built from its own settings section
(``refiner.<name>``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence, cast

from caption_agent.errors import BackendUnavailableError, ModelOutputError
from caption_agent.refiners.base import Refiner


class CannotComposeError(ModelOutputError):
    """A link has no data to write this item (the template refiner: a locale without catalog text or lexicon
    names, no facts). Retrying cannot help: when no later link publishes and the draft cannot stand in, the item
    goes to review with this reason."""

    fix = "add the missing localized catalog fields or lexicon names, or have a person write this caption."


class LinkUnavailableError(CannotComposeError):
    """A link's server is down (``refiner.on_unavailable = "next"``): the next link writes these items, and
    provenance says why the link was passed over."""


class _PassOnWhenDown:
    """A link whose server cannot be reached hands its items to the next link instead of failing them; everything
    else is the link's own (attributes are forwarded)."""

    def __init__(self, link: Refiner) -> None:
        self.link = link
        self._warned = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.link, name)

    def refine_many(self, jobs: Sequence[Any]) -> list[Any]:
        outputs = list(self.link.refine_many(jobs))
        down = next((o for o in outputs if isinstance(o, BackendUnavailableError)), None)
        if down is not None and not self._warned:  # once per chain: the CLI shows it with the whole fix
            self._warned = True
            logging.getLogger("caption_agent").warning(
                "refiner %s is unavailable, the next link of the chain writes instead: %s", self.link.name, down
            )
        return [
            LinkUnavailableError(f"{self.link.name} unavailable, passed to the next link: {o.reason}", fix="")
            if isinstance(o, BackendUnavailableError)
            else o
            for o in outputs
        ]


@dataclass
class RefinerChain:
    """Refiners in the order they are tried; ``draft``: the moderated draft may stand in after the last one."""

    links: Sequence[Refiner]
    draft: bool = True

    @property
    def name(self) -> str:
        return "->".join([*(link.name for link in self.links), *(["draft"] if self.draft else [])])

    @property
    def model_id(self) -> str:
        return self.links[0].model_id if self.links else ""

    def check_ready(self) -> None:
        """Run the readiness probe of every link that has one (a vLLM server: a real completion)."""
        for link in self.links:
            link.check_ready()

    def close(self) -> None:
        for link in self.links:
            link.close()


def as_chain(refiner: Any) -> RefinerChain:
    """A chain from what callers pass: a RefinerChain, one refiner (then the draft), or None (the draft only)."""
    if isinstance(refiner, RefinerChain):
        return refiner
    return RefinerChain(links=[] if refiner is None else [refiner], draft=True)


def build_chain(settings: Any) -> RefinerChain:
    """The chain a ``RefinerSettings`` describes; each link is built from its own section. A link that fails to
    build closes the ones built before it."""
    from caption_agent.refiners import REFINERS

    links: list[Refiner] = []
    try:
        for name in settings.chain():
            links.append(REFINERS.build(name, settings.section(name)))
    except BaseException:
        for link in links:
            link.close()
        raise
    draft = settings.backend == "none" or "draft" in settings.fallbacks
    if getattr(settings, "on_unavailable", "next") == "next":  # a link with a next one passes on when down
        links = [
            cast(Refiner, _PassOnWhenDown(link)) if i < len(links) - 1 or draft else link
            for i, link in enumerate(links)
        ]
    return RefinerChain(links=links, draft=draft)
