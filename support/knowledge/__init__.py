"""Knowledge as versions: the policy and articles the answer prompt carries (docs/knowledge.md)."""
