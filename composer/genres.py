"""Genre templates: the outline an article of a known kind has, used when the model's fails.

The genre is chosen from the instruction by keyword rules (English and Chinese); each
template section's key points name the subject, so a filled-in outline still says what the
article is about. `subject_of` and `headline` turn an instruction ("Write a news story about
X for Y") into its subject ("X") and a title.
"""

from __future__ import annotations

import re

from composer.types import SectionPlan

# genre -> keywords that choose it (checked in this order; "explainer" is the default)
KEYWORDS = {
    "news": ("news", "report on", "announce", "press release", "headline", "新闻", "报道", "消息"),
    "notice": ("notice", "notification", "memo", "reminder", "announcement", "通知", "公告",
               "启事"),
    "howto": ("how to", "how-to", "guide to", "tutorial", "step by step", "tips", "beginner",
              "怎么", "如何", "教程", "指南", "入门"),
    "travel": ("travel", "trip", "visit", "itinerary", "tour", "journey", "旅行", "旅游", "游记",
               "行程"),
    "review": ("review", "critique", "verdict", "rating", "评测", "评论", "点评", "书评", "影评"),
    "history": ("history", "historical", "origins", "evolution of", "century", "历史", "起源",
                "演变"),
}

TEMPLATES: dict[str, dict[str, list[tuple[str, list[str]]]]] = {
    "explainer": {
        "en": [("What it is", ["what {s} means"]), ("Why it matters", ["why {s} matters"]),
               ("How it works", ["how {s} works"]), ("Examples", ["examples of {s}"]),
               ("Common questions", ["common questions about {s}"]),
               ("What comes next", ["the future of {s}"])],
        "zh": [("是什么", ["{s}的含义"]), ("为什么重要", ["{s}为何重要"]), ("如何运作", ["{s}如何运作"]),
               ("实例", ["{s}的例子"]), ("常见问题", ["关于{s}的常见问题"]), ("未来", ["{s}的未来"])],
    },
    "howto": {
        "en": [("Before you start", ["what you need for {s}"]),
               ("The first steps", ["getting started with {s}"]),
               ("Step by step", ["the main steps of {s}"]),
               ("Common mistakes", ["mistakes to avoid in {s}"]),
               ("Tips from experience", ["tips for {s}"]),
               ("Going further", ["where to go next with {s}"])],
        "zh": [("准备工作", ["{s}需要的准备"]), ("第一步", ["{s}如何开始"]), ("主要步骤", ["{s}的主要步骤"]),
               ("常见错误", ["{s}中要避免的错误"]), ("经验技巧", ["{s}的技巧"]), ("进一步学习", ["{s}的进阶"])],
    },
    "travel": {
        "en": [("Why go", ["what makes {s} worth the trip"]),
               ("Getting there", ["how to reach {s}"]),
               ("What to see", ["the sights of {s}"]),
               ("Food and local life", ["food and daily life in {s}"]),
               ("Where to stay", ["places to stay near {s}"]),
               ("Practical tips", ["when to go and what to pack for {s}"])],
        "zh": [("为什么去", ["{s}的魅力"]), ("交通", ["怎样到达{s}"]), ("景点", ["{s}的景点"]),
               ("美食与生活", ["{s}的美食和当地生活"]), ("住宿", ["{s}附近的住宿"]), ("实用贴士", ["去{s}的季节和行装"])],
    },
    "news": {
        "en": [("What happened", ["the news about {s}"]),
               ("Who is involved", ["the people and groups behind {s}"]),
               ("Background", ["how {s} came about"]),
               ("Reactions", ["what people say about {s}"]),
               ("What happens next", ["the next steps for {s}"])],
        "zh": [("事件经过", ["{s}的经过"]), ("相关各方", ["与{s}有关的人和机构"]), ("背景", ["{s}的来龙去脉"]),
               ("各方反应", ["各方对{s}的看法"]), ("后续", ["{s}的后续"])],
    },
    "notice": {
        "en": [("What is changing", ["the change: {s}"]), ("Who it affects", ["who {s} concerns"]),
               ("Dates and times", ["when {s} takes effect"]),
               ("What to do", ["what readers should do about {s}"]),
               ("Contact", ["where to ask about {s}"])],
        "zh": [("事项", ["{s}的内容"]), ("适用对象", ["{s}涉及的人员"]), ("时间安排", ["{s}的时间"]),
               ("注意事项", ["关于{s}需要做什么"]), ("联系方式", ["咨询{s}的方式"])],
    },
    "history": {
        "en": [("Origins", ["the beginnings of {s}"]), ("Early years", ["the early days of {s}"]),
               ("Turning points", ["the turning points of {s}"]),
               ("People who shaped it", ["the people behind {s}"]),
               ("Legacy", ["what {s} left behind"]), ("Today", ["{s} today"])],
        "zh": [("起源", ["{s}的起源"]), ("早期", ["{s}的早期"]), ("转折点", ["{s}的转折点"]),
               ("关键人物", ["影响{s}的人物"]), ("遗产", ["{s}的影响"]), ("今天", ["今天的{s}"])],
    },
    "review": {
        "en": [("First impressions", ["first impressions of {s}"]),
               ("What works", ["the strengths of {s}"]),
               ("What falls short", ["the weaknesses of {s}"]),
               ("Compared with others", ["how {s} compares"]),
               ("Verdict", ["who {s} is for"])],
        "zh": [("第一印象", ["{s}的第一印象"]), ("优点", ["{s}的优点"]), ("不足", ["{s}的不足"]),
               ("横向比较", ["{s}与同类比较"]), ("结论", ["{s}适合谁"])],
    },
}
_CONCLUSION = {"en": "Conclusion", "zh": "结语"}
_INTRODUCTION = {"en": "Introduction", "zh": "引言"}

_VERB = (r"^(?:please\s+|can you\s+|could you\s+|i want you to\s+|help me\s+)?"
         r"(?:write|compose|create|draft|produce|prepare|give|make|generate|tell|describe|"
         r"explain|plan|outline|put together)\b")
_LEAD = re.compile(
    _VERB + r"(?:\s+(?:me|us))?(?:\s+(?:an?|the|some|one|two|three|\d+))?"
    r"(?:\s+[\w-]+){0,4}?\s+(?:about|on|of|for|to|covering|introducing|explaining|describing)\s+",
    re.I)
_VERB_ONLY = re.compile(_VERB + r"\s+(?:an?\s+|the\s+)?", re.I)
_TAIL = re.compile(r"\s+(?:for|aimed at|targeting|in about|in around|in|with|using|within)\s+"
                   r"(?:a |an |the )?(?:readers|beginners|kids|children|students|parents|"
                   r"families|people|an? |\d+|our|my|local|general|newcomers|audience)\b.*$"
                   r"|[.;:!?。！？；：\n].*$", re.I | re.S)
_ZH_LEAD = re.compile(r"^(?:请|帮我|麻烦)?(?:写|撰写|创作|起草|生成|介绍|讲讲|谈谈)(?:一篇|一份|一则|篇)?"
                      r"(?:关于|有关|介绍)?")
_ZH_TAIL = re.compile(r"(?:的)?(?:文章|新闻|报道|通知|公告|游记|指南|教程|评测|短文|博客|故事)?"
                      r"(?:[，,。；;！!？?].*)?$", re.S)


def reads_as_instruction(text: str) -> bool:
    """Whether the text asks for something ("Write ...", "请写...") rather than naming it."""
    stripped = text.strip()
    return bool(_VERB_ONLY.match(stripped) or _ZH_LEAD.match(stripped) and
                _ZH_LEAD.match(stripped).end() > 0)


def choose_genre(instruction: str) -> str:
    """The genre whose keywords the instruction mentions first in KEYWORDS order."""
    lowered = instruction.lower()
    for genre, words in KEYWORDS.items():
        if any(word in lowered for word in words):
            return genre
    return "explainer"


def subject_of(instruction: str, language: str) -> str:
    """The thing the instruction is about: "Write a news story about X for Y" -> "X"."""
    text = " ".join(instruction.strip().split())
    if language == "zh":
        text = _ZH_LEAD.sub("", text, count=1)
        subject = _ZH_TAIL.sub("", text, count=1).strip() or text
        return subject[:30]
    lead = _LEAD.match(text) or _VERB_ONLY.match(text)
    if lead:
        text = text[lead.end():]
    subject = _TAIL.sub("", text).strip(" ,.\"'") or text.strip(" .")
    return " ".join(subject.split()[:12])


def headline(instruction: str, language: str) -> str:
    """A title made from the instruction's subject (capitalised), for when none is better."""
    subject = subject_of(instruction, language)
    if language == "zh":
        return subject
    return subject[:1].upper() + subject[1:]


def template_sections(instruction: str, language: str, count: int) -> list[SectionPlan]:
    """Up to `count` sections of the instruction's genre, key points naming its subject.

    Introduction and Conclusion are added around the template as the count allows (a template
    has 5-6 sections, so at most 8 come back; the planner fills longer outlines).
    """
    subject = subject_of(instruction, language)
    body = [SectionPlan(title=title, key_points=[point.format(s=subject) for point in points])
            for title, points in TEMPLATES[choose_genre(instruction)][language]]
    if count >= len(body) + 1:
        body.append(SectionPlan(_CONCLUSION[language], [subject]))
    if count >= len(body) + 1:
        body.insert(0, SectionPlan(_INTRODUCTION[language], [subject]))
    return body[:count]
