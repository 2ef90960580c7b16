"""The one progress line under the compose and edit buttons: a bar, the stage, words, time.

Gradio's own progress overlay greys the component it updates; the compose view hides it
(show_progress="hidden") so the article stays readable while it streams, and shows this
line instead, in the browser's language.
"""

from __future__ import annotations

from dataclasses import dataclass

from ui.i18n import say

WRITE_STAGES = ("write", "draft", "check", "save")
IMAGE_STAGES = ("slots", "caption", "retrieve", "select", "generate", "web")


@dataclass
class Progress:
    """Where a running job stands: its stage (a ProgressEvent stage), the section being
    written (0-based) of how many, words saved so far, seconds since it started, and the
    share done (0..1)."""

    stage: str
    section: int | None = None
    sections: int | None = None
    words: int = 0
    seconds: float = 0.0
    fraction: float = 0.0
    position: int | None = None  # waiting for a worker: place in line, 1 = next
    wait_seconds: float | None = None


# Run on page load: while a job runs (its Stop button shows), every clock of a progress line
# counts on from the elapsed time it was rendered with, so the time moves even while the
# model has not reported anything new (planning, a long first paragraph).
CLOCK_JS = """() => {
  const seconds = (text) => text.split(":").reduce((total, part) => total * 60 + Number(part), 0);
  const show = (s) => {
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(sec).padStart(2, "0");
  };
  setInterval(() => {
    if (!document.querySelector("#xc-stop")?.offsetParent) return;
    for (const el of document.querySelectorAll(".xc-clock")) {
      if (!el.dataset.seen) {  // a clock just rendered: it starts from the time it shows
        el.dataset.seen = String(Date.now());
        el.dataset.base = String(seconds(el.textContent));
      }
      const since = (Date.now() - Number(el.dataset.seen)) / 1000;
      el.textContent = show(Math.floor(Number(el.dataset.base) + since));
    }
  }, 1000);
}"""


def clock(seconds: float) -> str:
    """Elapsed time as m:ss (h:mm:ss past an hour)."""
    whole = int(max(0.0, seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def stage_text(language: str, progress: Progress) -> str:
    """The stage in words: "Writing section 2 of 5", "Placing images", "Done"…"""
    stage = progress.stage
    if stage == "queued":
        text = say(language, "stage_queued")
        if progress.position:
            text += " · " + say(language, "queue_place", position=progress.position)
        if progress.wait_seconds is not None:
            text += " · " + say(language, "queue_wait",
                                minutes=max(1, round(progress.wait_seconds / 60)))
        return text
    if stage == "plan":
        text = say(language, "stage_plan")
        if progress.sections:
            key = "sections_count_one" if progress.sections == 1 else "sections_count"
            text += " · " + say(language, key, sections=progress.sections)
        return text
    if stage in WRITE_STAGES:
        if progress.section is not None and progress.sections:
            return say(language, "stage_write", section=progress.section + 1,
                       sections=progress.sections)
        return say(language, "stage_write_any")
    if stage in IMAGE_STAGES:
        return say(language, "stage_images")
    if stage in ("done", "stopped"):
        return say(language, f"stage_{stage}")
    return say(language, "stage_write_any")


def progress_line(language: str, progress: Progress) -> str:
    """The line as Markdown: a progress bar (while running), the stage, words and time."""
    parts = [stage_text(language, progress)]
    if progress.words:
        parts.append(say(language, "words_count", words=progress.words))
    if progress.stage in ("done", "stopped"):
        line = " · ".join([*parts, clock(progress.seconds)])
        return ("✓ " if progress.stage == "done" else "■ ") + line
    # the browser keeps this clock ticking between updates (CLOCK_JS)
    parts.append(f'<span class="xc-clock">{clock(progress.seconds)}</span>')
    line = " · ".join(parts)
    share = min(1.0, max(0.0, progress.fraction))
    return f'<progress value="{share:.3f}" max="1"></progress> {line}'
