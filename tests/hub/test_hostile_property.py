"""Property-based: the report and publishing take any strings in every field (column names, labels, prompts,
completions, provenance values and section names: random Unicode, markup, `$`, backticks, pipes) and scores at
the float64 extremes (1e308, -1e308, 5e-324, NaN, inf). Nothing crashes; the page holds only the elements and
attributes the report itself writes, and shows each user string as text; the staged card renders (as markdown)
to nothing but the card's own elements; a file of the user's in the staging folder survives a restaging."""

import math
from html.parser import HTMLParser

import pytest
from datasets import Dataset, load_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from report_page import ReportPage
from test_publish import assert_same_rows

import resofilter_hf
from resofilter_hf.hub.publish import publish_dataset
from resofilter_hf.provenance import with_provenance


MARKUP = ["<script>alert(1)</script>", "<style>body{display:none}</style>", '<meta http-equiv="refresh" content="0">',
          '<img src=x onerror="alert(2)">', "$x^$", "$$\\frac{1}{0}$$", "`", "``a``", "<!--", "-->", "| a |", "**b**",
          "[l](javascript:alert(3))", "{}", "{0}", "&amp;", "\\", "# h", "\n", "<details>", "</table>"]  # fmt: skip
piece = st.one_of(
    st.sampled_from(MARKUP), st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=6)
)
user_text = st.lists(piece, min_size=1, max_size=3).map("".join)
EXTREMES = [1e308, -1e308, 5e-324, -5e-324, math.nan, math.inf, -math.inf, 1e-5, 1.00001e-5, 0.0, -2.5]
example = st.fixed_dictionaries(
    {
        "names": st.lists(user_text, min_size=3, max_size=3, unique_by=lambda s: s.strip()),
        "labels": st.lists(user_text, min_size=1, max_size=3),
        "texts": st.lists(user_text, min_size=2, max_size=2),
        "scores": st.lists(st.sampled_from(EXTREMES), min_size=6, max_size=6),
        "provenance": st.lists(user_text, min_size=4, max_size=4),
    }
)
REPORT_TAGS = {"html", "head", "meta", "link", "title", "style", "body", "header", "h1", "div", "nav", "a", "main",
               "section", "h2", "h3", "p", "figure", "img", "figcaption", "table", "thead", "tbody", "tr", "th", "td",
               "span", "details", "summary", "code", "footer", "b"}  # fmt: skip
REPORT_ATTRS = {"charset", "http-equiv", "content", "name", "rel", "href", "lang", "id", "class", "src", "alt"}
CLASSES = {"sub", "tiles", "tile", "k", "v", "n", "lead", "grid", "num", "dropped", "cut", "dropped cut", "text",
           "full", "note", "scroll", "more", "chip", "chip flag", "role", "raw", "rho", "kv", "headline"}  # fmt: skip
CARD_TAGS = {"h1", "h2", "h3", "p", "table", "thead", "tbody", "tr", "th", "td", "code", "pre", "img", "a", "details",
             "summary", "blockquote", "strong", "br"}  # fmt: skip


def build(case) -> tuple[Dataset, str, str]:
    """A scored dataset whose score column, label column, labels, texts and provenance are the generated strings."""
    score, label, other = case["names"]
    rows = len(case["scores"])
    scores = list(case["scores"])
    scores[0] = 1e-5  # at least one scored row, so there is something to publish
    data = {
        "prompt": [case["texts"][i % 2] + f" {i}" for i in range(rows)],
        "completion": [case["texts"][(i + 1) % 2] for i in range(rows)],
        label: [case["labels"][i % len(case["labels"])] for i in range(rows)],
        score: scores,
        other: [float(i) for i in range(rows)],
    }
    model, module, section, value = case["provenance"]
    scoring = {"column": score, "model_id": model, "modules": [module], "lr": 1e-5, "optimizer": value,
               "reference": {section: value}, "confounds": {score: {"length": 0.9, "loss": -0.7, "n": 40}}}  # fmt: skip
    return with_provenance(Dataset.from_dict(data), scoring=scoring, **{section: {value: [model, 1.5]}}), score, label


def squash(text: str) -> str:
    return " ".join(text.split())


class Tags(HTMLParser):
    """Every start tag and its attributes, of an HTML fragment or page."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def check_report(case, tmp_path) -> None:
    ds, score, label = build(case)
    text = resofilter_hf.report(ds, tmp_path / "r.html", label_column=label).read_text(encoding="utf-8")
    page = ReportPage(text)
    for tag, attrs in page.tags:
        assert tag in REPORT_TAGS, tag
        assert set(attrs) <= REPORT_ATTRS, (tag, attrs)
        assert attrs.get("class", "num") in CLASSES, attrs
        assert attrs.get("href", "#").startswith(("#", "data:,")), attrs
        assert tag != "img" or attrs["src"].startswith("data:image/png;base64,")
    tags = [tag for tag, _ in page.tags]
    assert tags.count("style") == 1 and tags.count("meta") == 3 and tags.count("h1") == 1
    shown = squash(page.text)
    for value in (score, label, *case["labels"], *case["provenance"]):
        assert squash(value) in shown, value


def check_publish(case, tmp_path) -> None:
    markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py renders the card to check it")
    ds, score, label = build(case)
    folder = tmp_path / "repo"
    publish_dataset(ds, local_dir=folder, label_columns=[label])
    mine = folder / "NOTES.md"
    mine.write_text(case["provenance"][0], encoding="utf-8")
    publish_dataset(ds, local_dir=folder, configs=[0.5], label_columns=[label])  # a restaging
    assert mine.read_text(encoding="utf-8") == case["provenance"][0]
    assert_same_rows(load_dataset(str(folder), "default", cache_dir=str(tmp_path / "cache"))["train"], ds)
    card = (folder / "README.md").read_text(encoding="utf-8").split("\n---\n", 1)[1]
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(card)
    parsed = Tags(rendered)
    for tag, attrs in parsed.tags:
        assert tag in CARD_TAGS, tag
        assert tag != "img" or attrs["src"].startswith("images/"), attrs
        assert tag != "a" or attrs["href"] == "https://arxiv.org/abs/2412.14809", attrs
    assert [tag for tag, _ in parsed.tags].count("strong") <= 1  # "Read this first", nothing of the user's
    shown = squash("".join(parsed.text))
    for value in (score, label, *case["labels"]):
        assert squash(value) in shown, value


QUIET = dict(
    deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@settings(max_examples=25, **QUIET)
@given(example)
def test_the_report_of_any_strings_and_extreme_scores(tmp_path_factory, case):
    check_report(case, tmp_path_factory.mktemp("report"))


@settings(max_examples=8, **QUIET)
@given(example)
def test_publishing_any_strings_and_extreme_scores(tmp_path_factory, case):
    check_publish(case, tmp_path_factory.mktemp("publish"))


@pytest.mark.slow
@settings(max_examples=20, **{**QUIET, "derandomize": False})
@given(example)
def test_report_and_publishing_larger_run(tmp_path_factory, case):
    check_report(case, tmp_path_factory.mktemp("report"))
    check_publish(case, tmp_path_factory.mktemp("publish"))


def test_the_checks_catch_an_injected_element(tmp_path, monkeypatch):
    """The checker itself: with the report's escaping switched off, a column named <script> is caught."""
    from resofilter_hf.hub import report_html

    monkeypatch.setattr(report_html, "esc", lambda value: str(value))
    case = {"names": ["<script>x</script>", "label", "other"], "labels": ["a"], "texts": ["p", "c"],
            "scores": [1e-5] * 6, "provenance": ["m", "n", "s", "v"]}  # fmt: skip
    with pytest.raises(AssertionError, match="script"):
        check_report(case, tmp_path)
