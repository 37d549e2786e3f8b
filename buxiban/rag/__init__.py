"""Retrieval-augmented generation: index documents, retrieve chunks for a question, put them in a prompt."""

from .retrieve import Chunk, RagIndex, rag_messages, retrieve

__all__ = ["Chunk", "RagIndex", "rag_messages", "retrieve"]
