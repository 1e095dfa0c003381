"""webapp.web.markdown: Markdown renders as HTML, and nothing a model writes becomes script, a handler,
a dangerous URL or an image. Assertions read the output with the stdlib's HTML parser."""
from html.parser import HTMLParser

import pytest
from markupsafe import Markup

from webapp.web.markdown import render


class Parsed(HTMLParser):
    """Every start tag as (tag, {attr: value}), and the text as a browser would show it."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.elements, self.texts = [], []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_data(self, data):
        self.texts.append(data)

    @property
    def tags(self):
        return [tag for tag, _ in self.elements]

    @property
    def text(self):
        return "".join(self.texts)

    def all(self, tag):
        return [attrs for name, attrs in self.elements if name == tag]


def parse(markdown):
    return Parsed(render(markdown))


def hrefs(parsed):
    return [attrs.get("href") for attrs in parsed.all("a")]


def assert_no_handlers(parsed):
    handlers = [(tag, name) for tag, attrs in parsed.elements for name in attrs if name.lower().startswith("on")]
    assert handlers == []


# --- Markdown renders ------------------------------------------------------------------------------
def test_headings_and_emphasis():
    parsed = parse("# Title\n\n## Sub\n\nSome **bold**, *em* and ~~gone~~ text.")
    assert {"h1", "h2", "p", "strong", "em"} <= set(parsed.tags)
    assert {"s", "del"} & set(parsed.tags), "strikethrough is enabled"
    assert "Title" in parsed.text and "bold" in parsed.text


def test_lists_keep_their_start_number():
    parsed = parse("- a\n- b\n\n3. three\n4. four\n")
    assert parsed.tags.count("li") == 4 and "ul" in parsed.tags
    assert parsed.all("ol") == [{"start": "3"}]


def test_code_fences_are_pre_code_with_the_code_as_text():
    parsed = parse("```python\nif a < b and c > d:\n    print('<b>')\n```\n")
    assert parsed.tags[:2] == ["pre", "code"]
    assert "if a < b and c > d:\n    print('<b>')" in parsed.text
    assert "b" not in parsed.tags, "markup inside code stays text"


def test_tables_render():
    parsed = parse("| name | n |\n|:-----|--:|\n| a | 1 |\n| b | 2 |\n")
    assert {"table", "thead", "tbody", "tr", "th", "td"} <= set(parsed.tags)
    assert parsed.tags.count("td") == 4
    assert all(attrs == {} for tag, attrs in parsed.elements if tag in ("th", "td")), "no style attribute"


def test_blockquote_hr_and_inline_code():
    parsed = parse("> quoted\n\n---\n\nuse `x<y`")
    assert {"blockquote", "hr", "code"} <= set(parsed.tags)
    assert "x<y" in parsed.text


# --- what must never get through -------------------------------------------------------------------
@pytest.mark.parametrize("link", ["[x](javascript:alert(1))", "[x](JavaScript:alert(1))", "[x](  javascript:alert(1) )",
                                  "<javascript:alert(1)>", "[x](jav&#x09;ascript:alert(1))",
                                  "[x](&#106;avascript:alert(1))", "[x](vbscript:msgbox(1))"])
def test_no_javascript_href(link):
    parsed = parse(link)
    for href in hrefs(parsed):
        assert href is None or not href.replace("\t", "").lower().lstrip().startswith(("javascript:", "vbscript:"))


@pytest.mark.parametrize("link", ["[d](data:text/html,<script>alert(1)</script>)",
                                  "[d](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
                                  "![d](data:image/png;base64,iVBORw0KGgo=)", "<data:text/html,hi>"])
def test_data_urls_are_refused(link):
    parsed = parse(link)
    assert not [href for href in hrefs(parsed) if href and href.lower().startswith("data:")]
    assert "img" not in parsed.tags


def test_raw_img_is_escaped_text_not_a_tag():
    payload = "<img src=x onerror=alert(1)>"
    parsed = parse(payload)
    assert "img" not in parsed.tags
    assert payload in parsed.text, "shown as the text it is"
    assert_no_handlers(parsed)


def test_script_never_becomes_an_element():
    for payload in ("<script>alert(1)</script>", "text <script>alert(1)</script> inline",
                    "<div>\n<script>alert(1)</script>\n</div>", "`x` <SCRIPT SRC=//e.com/x.js></SCRIPT>"):
        parsed = parse(payload)
        assert "script" not in parsed.tags, payload
        assert "div" not in parsed.tags, payload


def test_raw_links_lose_nothing_but_stay_text():
    parsed = parse('<a href="https://e.com" onclick="alert(1)">x</a>')
    assert_no_handlers(parsed)
    assert "a" not in parsed.tags, "raw HTML is not passed through: it is text"
    assert 'onclick="alert(1)"' in parsed.text


def test_markdown_links_get_rel_noopener_nofollow():
    parsed = parse('[a](https://example.com "Example") and <https://auto.example/x>')
    links = parsed.all("a")
    assert [link["href"] for link in links] == ["https://example.com", "https://auto.example/x"]
    assert links[0]["title"] == "Example"
    for link in links:
        assert set(link["rel"].split()) >= {"noopener", "nofollow"}


def test_a_quote_in_a_url_cannot_add_an_attribute():
    parsed = parse('[ok](https://example.com/"onmouseover="alert(1))')
    assert_no_handlers(parsed)
    assert list(parsed.all("a")[0]) == ["href", "rel"]


def test_mailto_links_are_kept():
    assert hrefs(parse("[m](mailto:someone@example.com)")) == ["mailto:someone@example.com"]


def test_images_never_render_as_img_but_as_links():
    parsed = parse("![a chart](https://x/y.png) ![](https://x/z.png)")
    assert "img" not in parsed.tags
    assert hrefs(parsed) == ["https://x/y.png", "https://x/z.png"]
    assert "a chart" in parsed.text, "the alt text is what the reader sees"


def test_reference_style_images_and_links_are_vetted_too():
    parsed = parse("![pic][p] [go][g]\n\n[p]: https://x/y.png\n[g]: javascript:alert(1)\n")
    assert "img" not in parsed.tags
    assert not [href for href in hrefs(parsed) if href and "javascript" in href.lower()]


# --- the return value ------------------------------------------------------------------------------
def test_output_is_markup_so_jinja_does_not_escape_it_again():
    html = render("**x**")
    assert isinstance(html, Markup)
    assert Markup("{}").format(html) == html, "Markup is inserted as is"
    assert str(html).strip() == "<p><strong>x</strong></p>"


@pytest.mark.parametrize("empty", [None, ""])
def test_nothing_renders_as_empty_markup(empty):
    html = render(empty)
    assert isinstance(html, Markup) and html == ""
