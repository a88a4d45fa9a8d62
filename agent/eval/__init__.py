"""Caption evaluation: COCO metrics (pycocoevalcap), CLIP-S, compliance, grounding and moderation shares.

``from agent.eval.report import evaluate``; importing this package loads nothing heavy.
"""
