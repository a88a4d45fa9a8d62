"""Policy rules, one per module: each declares itself (``Rule`` subclass with its name, settings model and order);
``rules.base.RULES`` finds them and ``caption_agent.policies.schema`` derives the policy file's ``rules:`` from them."""
