"""Policy rules, one per file; ``caption_agent.policies.schema`` registers them by name."""
