"""Reading Markdown, text and HTML into sections, and chunking with overlap."""

from __future__ import annotations

import pytest

from buxiban.errors import RagError
from buxiban.rag.documents import (
    Section,
    chunk_file,
    chunk_sections,
    count_tokens,
    html_sections,
    markdown_sections,
    read_sections,
    tail,
)

MARKDOWN = """Intro line before any heading.

# Plans

Every plan includes a helmet.

## City plan
The City plan costs NT$750
per month.

```
# not a heading inside a fence
```

## Cargo plan

- carries 80 kg
- has a rain cover

# Deposit

The deposit is NT$2,000.
"""


def test_markdown_sections_follow_the_heading_path():
    sections = markdown_sections(MARKDOWN)
    assert [s.heading for s in sections] == ["", "Plans", "Plans > City plan", "Plans > Cargo plan", "Deposit"]
    city = sections[2]
    assert city.paragraphs[0] == "The City plan costs NT$750 per month."  # soft line break joined
    assert "# not a heading inside a fence" in " ".join(city.paragraphs)
    assert sections[3].paragraphs == ("- carries 80 kg\n- has a rain cover",)  # list items keep their lines


def test_html_is_stripped_to_text_with_headings_and_paragraphs():
    html = """<html><head><title>T</title><style>p { color: red }</style><script>var secret = 1;</script></head>
    <body><nav>Home</nav><h1>Support</h1><p>Open 07:00 to 23:00 &amp; on <b>holidays</b>.</p>
    <h2>Repairs</h2><ul><li>Within 48 hours</li><li>Anywhere in Taipei</li></ul>
    <script>track();</script><h1>Area</h1><p>Taipei &gt; New Taipei</p></body></html>"""
    sections = html_sections(html)
    assert [s.heading for s in sections] == ["", "Support", "Support > Repairs", "Area"]
    assert sections[0].paragraphs == ("Home",)
    assert sections[1].paragraphs == ("Open 07:00 to 23:00 & on holidays.",)
    assert sections[2].paragraphs == ("Within 48 hours", "Anywhere in Taipei")
    assert sections[3].paragraphs == ("Taipei > New Taipei",)
    text = " ".join(p for s in sections for p in s.paragraphs)
    assert "secret" not in text and "track" not in text and "color" not in text and "<" not in text


def test_chunks_stay_under_the_limit_and_overlap(tmp_path):
    sentences = [f"Sentence number {i} says the fact {i * 7} out loud." for i in range(60)]
    paragraphs = tuple(" ".join(sentences[i : i + 3]) for i in range(0, 60, 3))
    chunks = chunk_sections([Section("Long > Section", paragraphs)], chunk_tokens=60, overlap=12)
    assert len(chunks) > 5
    assert all(count_tokens(c.text) <= 60 for c in chunks)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for before, after in zip(chunks, chunks[1:]):
        carried = tail(before.text, 12)
        assert after.text.startswith(carried) and count_tokens(carried) == 12
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)  # nothing dropped


def test_no_overlap_means_disjoint_chunks_and_headings_are_boundaries():
    sections = [Section("A", ("one two three four five six seven eight nine ten",) * 3), Section("B", ("eleven",))]
    chunks = chunk_sections(sections, chunk_tokens=20, overlap=0)
    assert [c.heading for c in chunks] == ["A", "A", "B"]
    assert sum(count_tokens(c.text) for c in chunks) == 31
    assert chunks[-1].text == "eleven"


def test_a_paragraph_longer_than_a_chunk_is_split_at_sentences_then_words():
    one_sentence = " ".join(f"w{i}" for i in range(100))
    chunks = chunk_sections([Section("", (one_sentence,))], chunk_tokens=40, overlap=8)
    assert all(count_tokens(c.text) <= 40 for c in chunks)
    assert chunks[0].text.startswith("w0 w1") and chunks[-1].text.endswith("w99")


def test_files_of_each_kind_and_bad_inputs(tmp_path):
    (tmp_path / "a.txt").write_text("First paragraph.\n\n\nSecond\nparagraph.\n", encoding="utf-8")
    (tmp_path / "b.HTML").write_text("<h1>T</h1><p>x</p>", encoding="utf-8")
    (tmp_path / "c.pdf").write_bytes(b"%PDF")
    (tmp_path / "d.md").write_bytes(b"\xff\xfe caf\xe9")
    assert read_sections(tmp_path / "a.txt") == [Section("", ("First paragraph.", "Second paragraph."))]
    assert [c.heading for c in chunk_file(tmp_path / "b.HTML")] == ["T"]
    with pytest.raises(RagError, match="not a Markdown, text or HTML"):
        read_sections(tmp_path / "c.pdf")
    with pytest.raises(RagError, match="UTF-8"):
        read_sections(tmp_path / "d.md")
    with pytest.raises(RagError, match="overlap"):
        chunk_sections([], chunk_tokens=40, overlap=20)
    with pytest.raises(RagError, match="chunk_tokens"):
        chunk_sections([], chunk_tokens=4, overlap=0)


def test_a_heading_with_long_runs_of_spaces_parses_at_once():
    """The old heading pattern backtracked cubically on runs of spaces (1,000 took 2.5 s, 2,000 took
    20 s; a hostile 20,000 would take hours). The title is still the text, without the closing hashes."""
    from buxiban.rag.documents import MARKDOWN_HEADING

    spaces = " " * 20_000
    assert MARKDOWN_HEADING.match("#" + spaces + "a" + spaces + "!").group(2).strip() == "a" + spaces + "!"
    assert MARKDOWN_HEADING.match("## Plans ##").group(2).rstrip("#").strip() == "Plans"
    assert MARKDOWN_HEADING.match("#hashtag") is None and MARKDOWN_HEADING.match("#   ") is None
