"""Markdown for finished results: markdown-it-py renders it, nh3 cleans the HTML before it is marked safe."""
import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markupsafe import Markup

# No <img>: an image in a model's output would make the reader's browser fetch whatever URL the
# model (or a prompt injected into it) chose, on page load, without a click. Images become links.
TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
}
# No alignment on th/td: markdown-it writes it as a style attribute, and no style gets through.
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
URL_SCHEMES = {"http", "https", "mailto"}  # no javascript:, data:, vbscript:, file:
LINK_REL = "noopener nofollow"  # a model's links are not ours to vouch for


def _image_as_link(renderer, tokens, idx, options, env):
    """An image as a link to it, showing its alt text: the reader sees what it was and may follow
    it, but nothing is fetched unasked. src was already vetted by markdown-it's validateLink."""
    token = tokens[idx]
    src = token.attrGet("src") or ""
    alt = renderer.renderInlineAsText(token.children or [], options, env)
    return f'<a href="{escapeHtml(src)}">{escapeHtml(alt or src)}</a>'


def _parser():
    # "html": False makes markdown-it escape any raw HTML in the text instead of passing it on.
    md = MarkdownIt("commonmark", {"html": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("image", _image_as_link)
    return md


# Module-level: a MarkdownIt holds only rules and options; each render gets its own state.
MD = _parser()


def clean(html):
    """nh3 (ammonia) is the second line of defence: whatever markdown-it emitted, only the
    allow-listed tags, attributes and URL schemes survive."""
    return nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=URL_SCHEMES, link_rel=LINK_REL)


def render(text: str) -> Markup:
    """The text's Markdown as sanitised HTML, safe for Jinja; empty Markup for None or ""."""
    if not text:
        return Markup("")
    return Markup(clean(MD.render(text)))
