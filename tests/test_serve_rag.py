"""Per-request RAG on the OpenAI-compatible server: `extra_body={"rag": {"index": NAME, "k": K}}` through the
official SDK against a real server process, the tiny chat model and a tiny index."""

from __future__ import annotations

import json

import httpx
import pytest

from buxiban.data.tokenize import encode_prompt
from buxiban.errors import ServeError
from buxiban.rag.index import build_index
from buxiban.rag.retrieve import RagIndex, rag_messages
from buxiban.serve.api.retrieval import rag_request

from conftest import KEY, SYSTEM, Server, write_docs

pytestmark = pytest.mark.integration  # a server process

QUESTION = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "How much is the Cargo plan?"}]


@pytest.fixture(scope="module")
def rag_server(tiny_model_dir, tiny_encoder_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("serve-rag")
    index = work / "docs.db"
    build_index(write_docs(work / "docs"), index, embedder_spec=str(tiny_encoder_dir), bm25=True)
    running = Server(tiny_model_dir, work / "home", "--rag", f"docs={index}")
    yield running, index
    running.stop()


def test_a_request_with_rag_gets_documents_in_its_prompt_and_sources_back(rag_server, tiny_tokenizer):
    server, index = rag_server
    client = server.client()
    plain = client.chat.completions.create(model="tiny-model0", messages=QUESTION, max_tokens=8, temperature=0)
    assert "rag" not in (plain.model_extra or {})
    reply = client.chat.completions.create(
        model="tiny-model0",
        messages=QUESTION,
        max_tokens=8,
        temperature=0,
        extra_body={"rag": {"index": "docs", "k": 2}},
    )
    rag = reply.model_extra["rag"]
    expected = RagIndex(index).search("How much is the Cargo plan?", 2)
    assert (rag["index"], rag["k"]) == ("docs", 2)
    assert [s["source"] for s in rag["sources"]] == [c.source for c in expected]
    assert [s["text"] for s in rag["sources"]] == [c.text for c in expected]
    assert [s["score"] for s in rag["sources"]] == pytest.approx([c.score for c in expected])
    # the model read exactly the prompt chat --rag, eval --rag and `rag augment` build
    assert reply.usage.prompt_tokens == len(encode_prompt(tiny_tokenizer, rag_messages(QUESTION, expected)))
    assert reply.usage.prompt_tokens > plain.usage.prompt_tokens + 20

    stream = client.chat.completions.create(
        model="tiny-model0", messages=QUESTION, max_tokens=8, temperature=0, stream=True, extra_body={"rag": "docs"}
    )
    chunks = list(stream)
    assert chunks[0].model_extra["rag"]["k"] == 3 and len(chunks[0].model_extra["rag"]["sources"]) == 3
    assert all("rag" not in (c.model_extra or {}) for c in chunks[1:])
    whole = client.chat.completions.create(
        model="tiny-model0", messages=QUESTION, max_tokens=8, temperature=0, extra_body={"rag": {"index": "docs"}}
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content


@pytest.mark.parametrize(
    "option, param, words",
    [
        ({"index": "manuals"}, "rag.index", "this server's indexes: docs"),
        ({"index": "docs", "k": 0}, "rag.k", "from 1 to 20"),
        ({"index": "docs", "k": "3"}, "rag.k", "whole number"),
        ({"index": "docs", "top": 3}, "rag.top", "rag takes index, k"),
        (["docs"], "rag", "must be an object"),
    ],
)
def test_bad_rag_options_are_refused_with_the_field(rag_server, option, param, words):
    server, _ = rag_server
    response = httpx.post(
        server.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "tiny-model0", "messages": QUESTION, "rag": option},
        timeout=30,
    )
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == param and words in error["message"]


def test_rag_is_only_for_chat_and_only_for_named_indexes(rag_server, tmp_path):
    server, _ = rag_server
    response = httpx.post(
        server.url + "/v1/completions",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "tiny-model0", "prompt": "Hello", "rag": "docs"},
        timeout=30,
    )
    assert response.status_code == 400 and "/v1/chat/completions" in response.json()["error"]["message"]
    # a path is never an index name: the client cannot make the server open files
    with pytest.raises(ServeError, match="none .start the server with --rag NAME=INDEX"):
        rag_request({"rag": {"index": str(tmp_path / "x.db")}}, {})
    assert rag_request({"messages": []}, {"docs": "d.db"}) is None
    assert json.loads(json.dumps(rag_request({"rag": "docs"}, {"docs": "d.db"}).__dict__)) == {
        "name": "docs",
        "path": "d.db",
        "k": 3,
    }
