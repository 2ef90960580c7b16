"""composer/progress.py: kept paragraphs go to stdout, the draft being written to a terminal's
stderr on one rewritten line (never into the article), check lines to stderr."""

import io

from composer.progress import TerminalProgress
from composer.types import ProgressEvent


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(err):
    out = io.StringIO()
    show = TerminalProgress(out=out, err=err)
    show(ProgressEvent("draft", delta="In this article", pending="In this article"))
    show(ProgressEvent("draft", delta=" we explore", pending="In this article we explore"))
    show(ProgressEvent("write", delta="Herons hunt fish.\n\n"))
    show(ProgressEvent("check", "Section 1, paragraph 1: kept the best of 3 drafts"))
    return out.getvalue(), err.getvalue()


def test_a_terminal_sees_the_draft_on_one_line_and_the_article_gets_the_kept_text():
    out, err = run(Terminal())
    assert out == "Herons hunt fish.\n\n"
    assert "In this article we explore" in err and "\r\x1b[2K" in err
    assert "kept the best of 3 drafts" in err


def test_piped_stderr_gets_no_draft():
    out, err = run(io.StringIO())
    assert out == "Herons hunt fish.\n\n"
    assert "In this article" not in err and "kept the best of 3 drafts" in err
