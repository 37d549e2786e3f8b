"""Data shipped for the forgetting check: probes.jsonl (general knowledge and instruction following,
each with a checkable answer) and general_text.txt (plain prose for perplexity). Written by the
buxiban project for this purpose, Apache-2.0, and kept apart from the replay set of `buxiban data mix`
so that replay mixing never trains on the probe answers."""
