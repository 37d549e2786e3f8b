"""Base models: find them (embedded, local directory, GGUF file, hub ID), load them, adapt them."""
