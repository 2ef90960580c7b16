"""Export: Markdown with images, a zip, and self-contained HTML where no script can run."""

import base64
import io
import re
import zipfile

from composer.export import HTML_CSP, export, to_html, to_markdown, to_zip, write_markdown
from composer.types import ImageBlock, ImageCandidate, TextBlock
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
    assert text.startswith("# Harbors &amp; &lt;b&gt;Boats&lt;/b&gt;\n")
    assert "<script>" not in text
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
