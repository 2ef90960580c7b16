"""Export: Markdown with images, a zip, and self-contained HTML where no script can run."""

import base64
import io
import re
import zipfile
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from composer.export import (
    HTML_CSP,
    escape_markdown,
    export,
    to_html,
    to_markdown,
    to_zip,
    write_markdown,
)
from composer.types import ImageBlock, ImageCandidate, Outline, SectionPlan, TextBlock
from tests.support_pipeline import database, documents, image_store  # noqa: F401

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def saved_document(documents, image_store, title="Harbors & <b>Boats</b>"):
    image = image_store.list()[0]
    doc = documents.create(title, "instruction", "en", {}, None)
    documents.append_blocks(doc.id, [
        TextBlock("First paragraph " + HOSTILE),
        ImageBlock(caption="a harbor " + HOSTILE, image_id=image.id,
                   candidates=[ImageCandidate(image.id, image.caption, 0.9)]),
        TextBlock("Second paragraph."),
    ])
    return documents.get(doc.id), image


def test_html_is_self_contained_escaped_and_forbids_script(documents, image_store):
    doc, image = saved_document(documents, image_store)
    page = to_html(doc, image_store)
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "Harbors &amp; &lt;b&gt;Boats&lt;/b&gt;" in page
    assert f'content="{HTML_CSP}"' in page and "script-src" not in HTML_CSP
    data = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(data) == image_store.path(image.id).read_bytes()
    assert "Test Suite, CC0" in page  # attribution and license under the image
    assert page.count("<img") == 1


def test_markdown_links_images_in_a_folder_and_escapes_html(documents, image_store, tmp_path):
    doc, image = saved_document(documents, image_store)
    out = write_markdown(doc, image_store, tmp_path / "article.md")
    text = out.read_text()
    assert text.startswith("# Harbors & \\<b\\>Boats\\</b\\>\n")
    assert "<script>" not in text and "&lt;" not in text and "&amp;" not in text
    link = re.search(r"!\[[^\]]*\]\(([^)]+)\)", text).group(1)
    assert link.startswith("article_images/")
    assert (tmp_path / link).read_bytes() == image_store.path(image.id).read_bytes()
    assert text.index("First paragraph") < text.index("![") < text.index("Second paragraph")


def test_zip_holds_article_and_images(documents, image_store):
    doc, image = saved_document(documents, image_store)
    archive = zipfile.ZipFile(io.BytesIO(to_zip(doc, image_store)))
    names = archive.namelist()
    assert "article.md" in names
    image_names = [n for n in names if n.startswith("images/")]
    assert len(image_names) == 1
    assert archive.read(image_names[0]) == image_store.path(image.id).read_bytes()
    assert f"]({image_names[0]})" in archive.read("article.md").decode()


def test_markdown_to_stdout_links_the_stored_files(documents, image_store):
    doc, image = saved_document(documents, image_store)
    text = export(doc, image_store, "md", None)
    assert image_store.path(image.id).resolve().as_uri() in text
    assert to_markdown(doc, image_store).count("![") == 1


# A CommonMark renderer with raw HTML on (the most permissive viewer), plus GitHub's extras.
MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
TRICKY = [
    "<<the history of photography>>",
    HOSTILE,
    "<a href=\"javascript:alert(1)\">click</a> <http://example.com> <!-- comment -->",
    "AT&T says &lt;b&gt; and &#60;i&#62; are entities",
    "*stars* _under_ `code` [link](http://x) ![img](http://y) | pipe | ~~struck~~ a\\b",
    "1. not a list",
    "# not a heading",
    "- not a bullet",
    "    not a code block",
    "---",
]


class _TextAndTags(HTMLParser):
    """The visible text and the tag names of rendered HTML."""

    def __init__(self):
        super().__init__()
        self.text, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def rendered(markdown: str) -> _TextAndTags:
    parser = _TextAndTags()
    parser.feed(MARKDOWN.render(markdown))
    return parser


@pytest.mark.parametrize("text", TRICKY)
def test_escaped_markdown_renders_as_the_text_itself_and_never_as_html(text):
    page = rendered(escape_markdown(text))
    assert "".join(page.text).strip() == text.strip()
    assert set(page.tags) <= {"p"}  # no script, img, a, em, code, h1, li, pre, hr ...


def outlined_document(documents, image_store, section_of_blocks, titles=("Tides", "Boats",
                                                                          "Lights")):
    """A document whose outline has `titles`; one paragraph per entry of section_of_blocks
    (the section index it belongs to), an image after the first one."""
    image = image_store.list()[0]
    outline = Outline("Harbors", [SectionPlan(title, ["a point"], 100) for title in titles])
    doc = documents.create("Harbors", "instruction", "en", {}, outline)
    blocks = []
    for number, section in enumerate(section_of_blocks):
        blocks.append(TextBlock(f"Paragraph {number} of section {section}.", section=section))
        if number == 0:
            blocks.append(ImageBlock(caption="a harbor", image_id=image.id, section=section))
    documents.append_blocks(doc.id, blocks)
    return documents.get(doc.id)


def headings_in(markdown: str) -> list[str]:
    return re.findall(r"^## (.+)$", markdown, flags=re.M)


def test_every_export_has_section_headings_in_document_order(documents, image_store):
    doc = outlined_document(documents, image_store, [0, 0, 1, 2, 2])
    markdown = to_markdown(doc, image_store)
    assert headings_in(markdown) == ["Tides", "Boats", "Lights"]
    assert markdown.index("## Tides") < markdown.index("Paragraph 0") < markdown.index("![")
    assert markdown.index("Paragraph 1") < markdown.index("## Boats") < markdown.index(
        "Paragraph 2") < markdown.index("## Lights") < markdown.index("Paragraph 3")
    archive = zipfile.ZipFile(io.BytesIO(to_zip(doc, image_store)))
    assert headings_in(archive.read("article.md").decode()) == ["Tides", "Boats", "Lights"]
    page = to_html(doc, image_store)
    assert re.findall(r"<h2>(.*?)</h2>", page) == ["Tides", "Boats", "Lights"]
    assert page.index("<h2>Boats</h2>") < page.index("Paragraph 2")
    assert [t for t in rendered(markdown).tags if t.startswith("h")] == ["h1", "h2", "h2", "h2"]


def test_headings_follow_a_reordered_outline_and_skip_what_has_no_text(documents, image_store):
    # A person moved section 2 first, deleted section 1's text; section 3 has an empty title
    # and blocks of section 7 name no section of the outline.
    doc = outlined_document(documents, image_store, [2, 2, 0, 3, 7],
                            titles=("Tides", "Boats", "Lights", "  "))
    markdown = to_markdown(doc, image_store)
    assert headings_in(markdown) == ["Lights", "Tides"]
    assert markdown.index("## Lights") < markdown.index("Paragraph 0") < markdown.index(
        "## Tides") < markdown.index("Paragraph 2")
    assert "## \n" not in markdown and "<h2></h2>" not in to_html(doc, image_store)


def test_no_headings_without_an_outline_or_when_the_only_section_is_the_title(
        documents, image_store):
    doc, _ = saved_document(documents, image_store)
    assert headings_in(to_markdown(doc, image_store)) == []
    assert "<h2>" not in to_html(doc, image_store)
    single = outlined_document(documents, image_store, [0, 0], titles=("harbors",))
    assert headings_in(to_markdown(single, image_store)) == []


def test_hostile_section_titles_are_escaped_in_markdown_and_html(documents, image_store):
    doc = outlined_document(documents, image_store, [0, 1],
                            titles=(HOSTILE, "<<the history of photography>> #1"))
    markdown = to_markdown(doc, image_store)
    page = rendered(markdown)
    assert "script" not in page.tags and page.tags.count("img") == 1  # the article's image
    assert "<<the history of photography>> #1" in "".join(page.text)
    assert "&lt;" not in markdown
    html_page = to_html(doc, image_store)
    assert "<script>" not in html_page and "<h2>&lt;script&gt;" in html_page


def test_text_streaming_into_a_new_section_shows_under_its_heading(documents, image_store):
    from composer.render import article_html

    doc = outlined_document(documents, image_store, [0, 0])
    info = image_store.get
    page = article_html(doc, lambda image_id: "/media/x", info, "The boats come in", 1)
    assert page.index("Paragraph 1") < page.index("<h2>Boats</h2>") < page.index("boats come")
    again = article_html(doc, lambda image_id: "/media/x", info, "More about tides", 0)
    assert again.count("<h2>") == 1  # section 0 has its heading already
    assert article_html(doc, lambda image_id: "/media/x", info, "", 1).count("<h2>") == 1


def test_the_editor_view_shows_each_paragraphs_checks_and_the_share_view_does_not():
    from composer.render import article_html
    from composer.types import Document, TextBlock

    checks = {"passed": ["clean", "new", "on_topic"], "how": "rewritten", "drafts": 6,
              "failed": {"complete": "ends mid-sentence: '<b>x</b>'"}}
    doc = Document(id="d", slug="d", title="Herons", instruction="Herons",
                   blocks=[TextBlock("Herons hunt fish.", checks=checks),
                           TextBlock("Typed by a person.")])
    editor_view = article_html(doc, str, lambda image_id: None, show_checks=True)
    assert editor_view.count('class="checks"') == 1
    assert "✓ clean · new · on topic" in editor_view and "✗ complete" in editor_view
    assert "rewritten after failing a check, 6 drafts read" in editor_view
    assert "<b>x</b>" not in editor_view and "&lt;b&gt;x&lt;/b&gt;" in editor_view
    assert 'class="checks"' not in article_html(doc, str, lambda image_id: None)
