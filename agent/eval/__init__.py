"""Evaluation: captions (COCO metrics via pycocoevalcap, CLIP-S, compliance, grounding and moderation shares) and
the policy engine (catch and false-positive rates per rule over an adversarial corpus).

``from caption_agent.eval.report import evaluate`` (captions), ``from caption_agent.eval.policies import evaluate``
(policies); importing this package loads nothing heavy.
"""
