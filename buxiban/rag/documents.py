"""Read Markdown, plain text and HTML documents and split them into overlapping chunks.

A document becomes sections (a heading path such as "Plans > City plan" and the paragraphs under it);
chunks never cross a heading, because a chunk that mixes two topics retrieves badly for both. Inside a
section, whole paragraphs are packed up to `chunk_tokens`; a paragraph that is too long is split at
sentences, and a sentence that is too long at words. Each chunk after the first in a section starts with
the last `overlap` tokens of the one before, so a fact that straddles a boundary is whole in one of them.

Tokens here are words and punctuation marks (`\\w+|[^\\w\\s]`), a tokenizer-free count that WordPiece
expands by roughly 1.2x on English prose: the default 160 stays inside MiniLM's 256-token window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from ..errors import RagError
from ..text import CJK_CHARACTERS

SUFFIXES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
}
# A CJK character is a token of its own (Chinese has no spaces; one character is about one model token),
# other words are runs of word characters, punctuation marks count one each.
TOKEN = re.compile(rf"[{CJK_CHARACTERS}]|(?:(?![{CJK_CHARACTERS}])\w)+|[^\w\s]")
# Latin sentences end at a stop and a space; Chinese ones at a full-width stop, with no space after it.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？；])\s*")
# Greedy to the end of the line and trimmed in Python: a lazy title followed by optional spaces and
# hashes backtracked cubically on a long run of spaces (a hostile document hung indexing).
MARKDOWN_HEADING = re.compile(r"^(#{1,6})[ \t]+(\S.*)$")
FENCE = re.compile(r"^(```|~~~)")
_SPACE_INSIDE_CJK = re.compile(rf"(?<=[{CJK_CHARACTERS}]) (?=[{CJK_CHARACTERS}])")


@dataclass(frozen=True)
class Section:
    heading: str  # "Title > Sub-heading"; "" before the first heading
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class TextChunk:
    heading: str
    text: str
    ordinal: int  # position in its document, from 0


def count_tokens(text: str) -> int:
    return len(TOKEN.findall(text))


def document_kind(path: Path) -> str | None:
    return SUFFIXES.get(path.suffix.lower())


def read_sections(path: Path) -> list[Section]:
    kind = document_kind(path)
    if kind is None:
        raise RagError(f"{path}: not a Markdown, text or HTML file (suffixes: {', '.join(sorted(SUFFIXES))})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RagError(f"{path}: not UTF-8 text (byte {exc.start}); convert it with iconv or save it as UTF-8") from exc
    if kind == "markdown":
        return markdown_sections(text)
    if kind == "html":
        return html_sections(text)
    return [Section("", tuple(split_paragraphs(text)))]


def split_paragraphs(text: str) -> list[str]:
    return [join_words(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip()]


def join_words(words) -> str:
    """Words joined by one space, except between two CJK characters: a Chinese sentence wrapped over
    two lines is one run of text, and a space inside it would split a word."""
    return _SPACE_INSIDE_CJK.sub("", " ".join(words))


def markdown_sections(text: str) -> list[Section]:
    sections: list[Section] = []
    path: list[tuple[int, str]] = []  # (level, title) of the open headings
    lines: list[str] = []
    in_fence = False

    def close() -> None:
        paragraphs = _markdown_paragraphs(lines)
        if paragraphs:
            sections.append(Section(" > ".join(title for _, title in path), tuple(paragraphs)))
        lines.clear()

    for line in text.splitlines():
        if FENCE.match(line.strip()):
            in_fence = not in_fence
        heading = None if in_fence else MARKDOWN_HEADING.match(line)
        if heading:
            close()
            level = len(heading.group(1))
            title = heading.group(2).rstrip().rstrip("#").rstrip() or heading.group(2).strip()
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
        else:
            lines.append(line)
    close()
    return sections


def _markdown_paragraphs(lines: list[str]) -> list[str]:
    """Blank lines separate paragraphs; a list item or table row keeps its own line so that items are
    not glued into one run-on sentence."""
    paragraphs = []
    for block in split_blocks(lines):
        rows = [row.strip() for row in block if row.strip()]
        if rows and all(re.match(r"([-*+]|\d+[.)]|\|)\s?", row) for row in rows):
            paragraphs.append("\n".join(rows))
        elif rows:
            paragraphs.append(join_words(" ".join(rows).split()))
    return paragraphs


def split_blocks(lines: list[str]) -> list[list[str]]:
    blocks: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return [block for block in blocks if block]


class _HtmlSections(HTMLParser):
    """Headings (h1–h6) open sections; block elements end paragraphs; script, style and head are dropped."""

    BLOCKS = {
        "p",
        "div",
        "li",
        "tr",
        "br",
        "pre",
        "blockquote",
        "section",
        "article",
        "ul",
        "ol",
        "table",
        "dd",
        "dt",
        "header",
        "footer",
        "main",
        "nav",
        "aside",
        "form",
        "hr",
    }
    SKIPPED = {"script", "style", "head", "template", "noscript", "svg"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self.path: list[tuple[int, str]] = []
        self.paragraphs: list[str] = []
        self.words: list[str] = []
        self.heading_level = 0
        self.heading_words: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIPPED:
            self.skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.end_paragraph()
            self.end_section()
            self.heading_level, self.heading_words = int(tag[1]), []
        elif tag in self.BLOCKS:
            self.end_paragraph()

    def handle_endtag(self, tag):
        if tag in self.SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self.heading_level:
            title = " ".join(" ".join(self.heading_words).split())
            self.path = [(lvl, t) for lvl, t in self.path if lvl < self.heading_level] + [(self.heading_level, title)]
            self.heading_level = 0
        elif tag in self.BLOCKS:
            self.end_paragraph()

    def handle_data(self, data):
        if self.skipping:
            return
        (self.heading_words if self.heading_level else self.words).append(data)

    def end_paragraph(self) -> None:
        text = join_words("".join(self.words).split())
        if text:
            self.paragraphs.append(text)
        self.words = []

    def end_section(self) -> None:
        if self.paragraphs:
            self.sections.append(Section(" > ".join(t for _, t in self.path), tuple(self.paragraphs)))
        self.paragraphs = []


def html_sections(text: str) -> list[Section]:
    parser = _HtmlSections()
    parser.feed(text)
    parser.close()
    parser.end_paragraph()
    parser.end_section()
    return parser.sections


def chunk_sections(sections: list[Section], chunk_tokens: int = 160, overlap: int = 32) -> list[TextChunk]:
    if chunk_tokens < 8:
        raise RagError(f"chunk_tokens is {chunk_tokens}; use at least 8 (default 160)")
    if not 0 <= overlap < chunk_tokens // 2:
        raise RagError(
            f"overlap is {overlap}; use 0 to {chunk_tokens // 2 - 1} for chunk_tokens {chunk_tokens} (default 32)"
        )
    chunks: list[TextChunk] = []
    for section in sections:
        for text in pack_pieces(pieces(section.paragraphs, chunk_tokens - overlap), chunk_tokens, overlap):
            chunks.append(TextChunk(section.heading, text, len(chunks)))
    return chunks


def pieces(paragraphs: tuple[str, ...], limit: int) -> list[str]:
    """Paragraphs, with those over `limit` tokens split at sentences and then at words, so that every
    piece fits in a chunk next to the overlap carried in from the chunk before."""
    out: list[str] = []
    for paragraph in paragraphs:
        if count_tokens(paragraph) <= limit:
            out.append(paragraph)
            continue
        for sentence in SENTENCE_END.split(paragraph):
            if count_tokens(sentence) <= limit:
                out.append(sentence)
            else:
                out.extend(_windows(sentence, limit))
    return out


def _windows(text: str, limit: int) -> list[str]:
    starts = [match.start() for match in TOKEN.finditer(text)]
    return [
        text[starts[i] : starts[i + limit] if i + limit < len(starts) else len(text)].strip()
        for i in range(0, len(starts), limit)
    ]


def tail(text: str, tokens: int) -> str:
    """The last `tokens` tokens of `text`, cut from the original string so spacing survives."""
    starts = [match.start() for match in TOKEN.finditer(text)]
    return text[starts[-tokens] :] if 0 < tokens < len(starts) else (text if tokens else "")


def pack_pieces(parts: list[str], chunk_tokens: int, overlap: int) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for part in parts:
        part_size = count_tokens(part)
        if current and size + part_size > chunk_tokens:
            chunks.append("\n\n".join(current))
            carried = tail(chunks[-1], overlap)
            current, size = ([carried], count_tokens(carried)) if carried else ([], 0)
        current.append(part)
        size += part_size
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def chunk_file(path: Path, chunk_tokens: int = 160, overlap: int = 32) -> list[TextChunk]:
    return chunk_sections(read_sections(path), chunk_tokens, overlap)
