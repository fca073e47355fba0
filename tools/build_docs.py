"""Build the docs site from the notebooks.

With Quarto on PATH this is `nbdev_docs` (the site described by _quarto.yml). Quarto cannot be
installed on machines without internet, so otherwise we render the same processed notebooks
(`nbdev.serve.proc_nbs`: show_doc cells executed, hidden cells removed, directives applied) to
self-contained offline HTML: one page per notebook, an index page, a sidebar and prev/next links, math typeset by
the vendored KaTeX (tools/docs_assets/katex), code highlighted by pygments, and a search box over every page (a local
index, search-index.js, built here). Nothing is loaded from the network; the site works opened from disk.

    python tools/build_docs.py            # build into _docs/
    python tools/build_docs.py --check    # build into a temp dir and check every page (used by make test):
                                          # links and assets, then every page in headless Chromium (no console
                                          # errors, math typeset, the search finds each page); the browser part is
                                          # skipped, saying so, when no Chromium is on PATH
"""
from __future__ import annotations

import argparse
import configparser
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import mistune
import yaml
from mistune.plugins.table import table_in_list, table_in_quote
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer, get_lexer_by_name
from pygments.util import ClassNotFound

ROOT = Path(__file__).resolve().parents[1]
CFG = configparser.ConfigParser(delimiters=["="])
CFG.read(ROOT / "settings.ini")
DOC_HOST = CFG["DEFAULT"]["doc_host"].rstrip("/") + "/"
TITLE = CFG["DEFAULT"]["title"]
ASSETS = Path(__file__).resolve().parent / "docs_assets"      # site.js; katex/ (vendored, see its VENDORED.md)
_fmt = HtmlFormatter(nowrap=True)


class _Renderer(mistune.HTMLRenderer):
    "mistune's HTML, with fenced code blocks highlighted by pygments like the code cells."
    def block_code(self, code: str, info: str | None = None) -> str:
        lang = (info or "").split()[0] if (info or "").strip() else ""
        try: lexer = get_lexer_by_name(lang) if lang else None
        except ClassNotFound: lexer = None
        if lexer is None: return f'<pre class="highlight"><code>{html.escape(code)}</code></pre>\n'
        return f'<pre class="highlight">{highlight(code, lexer, _fmt)}</pre>\n'


_mistune = mistune.create_markdown(renderer=_Renderer(escape=False),                    # tables in list items too
                                   plugins=["table", table_in_list, table_in_quote, "strikethrough", "url"])

# Math, the way pandoc reads it: `$$...$$` display, `$...$` inline (no space inside the dollars, no digit right after
# the closing one), `\$` a dollar sign; never inside code. Found BEFORE the markdown conversion and swapped for inert
# placeholders, so `_`, `*` and `|` in TeX are not read as emphasis or table cells; restored afterwards as
# <span class="math inline|display">TeX</span>, which site.js typesets with KaTeX.
_MATH = re.compile(r"""
  (?P<fence>^[ ]{0,3}(?P<f>`{3,}|~{3,}).*?(?:^[ ]{0,3}(?P=f)[`~]*[ \t]*$|\Z))      # fenced code block: left alone
| (?P<code>(?P<ticks>`+)(?:(?!\n[ \t]*\n).)+?(?<!`)(?P=ticks)(?!`))               # code span: left alone
| (?P<escaped>\\\$)                                                               # \$: a dollar sign
| (?P<tag><(?=/?(?:script|style|textarea|title|iframe)\b))                        # prose about <script>: text
| \$\$(?P<display>(?:(?!\n[ \t]*\n).)+?)\$\$                                      # $$...$$
| \$(?P<inline>[^\s$](?:(?:(?!\n[ \t]*\n)[^$])*?[^\s$\\])?)\$(?!\d)              # $...$
""", re.S | re.M | re.X)
_SLOT = re.compile("\uE000(\\d+)\uE001")          # private-use characters: markdown leaves them alone


def protect_math(text: str) -> tuple[str, list[str]]:
    "`text` with each math span replaced by a placeholder, and the HTML of each span (and `<script` made text)."
    spans = []
    def swap(m):
        kind = "display" if m["display"] is not None else "inline" if m["inline"] is not None else None
        if m["tag"]: return "&lt;"
        if kind is None: return m[0]
        spans.append(f'<span class="math {kind}">{html.escape(m[kind].strip(), quote=False)}</span>')
        return f"\uE000{len(spans) - 1}\uE001"
    return _MATH.sub(swap, text), spans


def _md(text: str) -> str:
    "Markdown (with math) to HTML, dropping Quarto-only attribute blocks such as `[source](url){target=\"_blank\"}`."
    text, spans = protect_math(re.sub(r"\)\{[^}\n]*\}", ")", text))
    return _SLOT.sub(lambda m: spans[int(m[1])], _mistune(text))


def md_inline(text: str) -> str:
    "One line of markdown (a page's description) as inline HTML: code, emphasis, links and math, no <p>."
    out = _md(text).strip()
    return out[3:-4] if out.startswith("<p>") and out.endswith("</p>") and out.count("<p>") == 1 else out


CSS = """
body{margin:0;font:15px/1.55 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2328;display:flex}
nav{width:240px;min-height:100vh;background:#f6f8fa;border-right:1px solid #d0d7de;padding:18px;box-sizing:border-box;flex-shrink:0}
nav a{display:block;color:#0969da;text-decoration:none;padding:3px 0}nav a.cur{font-weight:700;color:#1f2328}
nav .home{font-size:17px;font-weight:700;margin-bottom:12px}
main{max-width:960px;padding:24px 40px;box-sizing:border-box;overflow-x:auto;flex:1}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:10px;overflow-x:auto;font-size:13px}
.out pre{background:#fff;border-style:dashed}.desc{color:#57606a;font-size:17px;margin-top:-8px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #d0d7de;padding:4px 8px;font-size:13px}
.pager{display:flex;justify-content:space-between;margin-top:40px;border-top:1px solid #d0d7de;padding-top:12px}
img{max-width:100%}.err pre{background:#fff0f0}
code{font-size:90%;background:#f6f8fa;border-radius:4px;padding:1px 4px}pre code{background:none;padding:0}
.math.display{display:block;overflow-x:auto;margin:10px 0}
#tvs-search{width:100%;box-sizing:border-box;padding:5px 8px;margin-bottom:12px;border:1px solid #d0d7de;
border-radius:6px;font:inherit}
#tvs-results{position:absolute;z-index:10;width:460px;max-height:70vh;overflow-y:auto;background:#fff;
border:1px solid #d0d7de;border-radius:6px;box-shadow:0 8px 24px rgba(0,0,0,.15);margin-top:-8px}
#tvs-results a.hit{padding:6px 10px;border-bottom:1px solid #eaeef2}#tvs-results a.hit:hover{background:#f6f8fa}
.hit-title{display:block;font-weight:600}.hit-text{display:block;color:#57606a;font-size:13px}
#tvs-results .none{padding:8px 10px}
""" + HtmlFormatter().get_style_defs(".highlight")


def directives(src: str) -> tuple[dict, str]:
    "Split `#| key: value` lines from the top of a code cell."
    d, lines = {}, src.splitlines()
    while lines and lines[0].startswith("#|"):
        k, _, v = lines.pop(0)[2:].strip().partition(":")
        d[k.strip()] = v.strip()
    return d, "\n".join(lines)


def render_output(o: dict, asis: bool) -> str:
    t = o.get("output_type")
    if t == "stream":
        return f'<div class="out"><pre>{html.escape("".join(o.get("text", "")))}</pre></div>'
    if t == "error":
        tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(o.get("traceback", [])))
        return f'<div class="out err"><pre>{html.escape(tb)}</pre></div>'
    data = o.get("data", {})
    join = lambda v: "".join(v) if isinstance(v, list) else v
    if "application/vnd.plotly.v1+json" in data:   # drawn with the local plotly.min.js, not the CDN the notebook used
        fig = data["application/vnd.plotly.v1+json"]
        div = "plotly-" + hashlib.sha1(json.dumps(fig, sort_keys=True).encode()).hexdigest()[:12]
        spec = json.dumps({"data": fig.get("data", []), "layout": fig.get("layout", {})}).replace("</", "<\\/")
        return (f'<div class="out"><div id="{div}"></div><script>(function(){{var f={spec};'
                f'Plotly.newPlot("{div}", f.data, f.layout, {{displaylogo:false}});}})();</script></div>')
    if "text/markdown" in data and asis: return _md(join(data["text/markdown"]))
    if "text/html" in data: return f'<div class="out">{join(data["text/html"])}</div>'
    if "image/svg+xml" in data: return f'<div class="out">{join(data["image/svg+xml"])}</div>'
    if "image/png" in data: return f'<div class="out"><img src="data:image/png;base64,{join(data["image/png"]).strip()}"></div>'
    if "text/markdown" in data: return _md(join(data["text/markdown"]))
    if "text/plain" in data: return f'<div class="out"><pre>{html.escape(join(data["text/plain"]))}</pre></div>'
    return ""


def render_nb(path: Path) -> tuple[dict, str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    meta, body = {}, []
    for c in nb["cells"]:
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        if c["cell_type"] == "raw" and src.startswith("---"):
            meta = yaml.safe_load(src.strip().strip("-")) or {}
            continue
        if c["cell_type"] == "markdown":
            body.append(_md(src))
        elif c["cell_type"] == "code":
            d, code = directives(src)
            if d.get("include") == "false": continue
            if d.get("echo") != "false" and code.strip():
                body.append(f'<pre class="highlight">{highlight(code, PythonLexer(), _fmt)}</pre>')
            if d.get("output") != "false":
                body.extend(render_output(o, d.get("output") == "asis") for o in c.get("outputs", []))
    text = "\n".join(body).replace(DOC_HOST, "")
    return meta, text


def slug(text: str) -> str:
    "A heading's anchor, the way pandoc (Quarto) makes it, so nbdev's `page.html#name` links land."
    text = re.sub(r"[^\w\s.-]", "", text.strip().lower())
    return re.sub(r"^[^a-z_]+", "", re.sub(r"\s+", "-", text))


def anchor_headings(body: str) -> str:
    "Give every heading without an id a unique one (`name`, then `name-1`, ...)."
    seen = {}
    def anchor(m):
        if "id=" in m[2]: return m[0]
        base = slug(html.unescape(re.sub(r"<[^>]+>", "", m[3]))) or "section"
        hid = base if base not in seen else f"{base}-{seen[base]}"
        seen[base] = seen.get(base, 0) + 1
        return f'<h{m[1]} id="{hid}"{m[2]}>{m[3]}</h{m[1]}>'
    return re.sub(r"<h([1-6])((?:\s[^>]*)?)>(.*?)</h\1>", anchor, body, flags=re.S)


class _Sections(HTMLParser):
    "A page's text by section (h2–h4 with an id), leaving out code, outputs, scripts and figures: the search index."
    SKIP, VOID = {"pre", "script", "style", "svg", "nav", "button"}, {"img", "br", "hr", "input", "meta", "link", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.sections, self.heading = [], [["", "", []]], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("h2", "h3", "h4") and a.get("id") and not self.skipping():
            self.sections.append([a["id"], "", []])
            self.heading = tag
        if tag not in self.VOID:
            self.stack.append(self.skipping() or tag in self.SKIP or "out" in (a.get("class") or "").split())

    def handle_endtag(self, tag):
        if tag == self.heading: self.heading = None
        if tag not in self.VOID and self.stack: self.stack.pop()

    def skipping(self) -> bool:
        return bool(self.stack and self.stack[-1])

    def handle_data(self, data):
        if self.skipping(): return
        if self.heading: self.sections[-1][1] += data
        else: self.sections[-1][2].append(data)


def search_entries(href: str, title: str, desc: str, body: str, limit: int = 1500) -> list[dict]:
    "Search-index entries of one page: the page (title, description, intro) and each h2–h4 section (heading, text)."
    parser = _Sections()
    body = re.sub(r"<(pre|script|style)\b.*?</\1>", "", body, flags=re.S)    # most of a page, never indexed: cut fast
    parser.feed(re.sub(r'<a [^>]*>source</a>', "", body))      # show_doc's [source] links are not text
    parser.close()
    entries = []
    for hid, heading, text in parser.sections:
        text = re.sub(r"\s+", " ", " ".join(text)).strip()
        if not hid: text = (re.sub(r"<[^>]+>", "", desc) + " " + text).strip()
        if hid and not (heading.strip() or text): continue
        entries.append({"t": title, "h": re.sub(r"\s+", " ", heading).strip(), "u": href + (f"#{hid}" if hid else ""),
                        "x": text[:limit]})
    return entries


def page(title: str, desc: str, body: str, nav: list, cur: str) -> str:
    links = "".join(f'<a href="{h}" class="{"cur" if h == cur else ""}">{html.escape(t)}</a>' for h, t in nav)
    hrefs = [h for h, _ in nav]
    i = hrefs.index(cur) if cur in hrefs else -1
    prev = f'<a href="{nav[i-1][0]}">← {html.escape(nav[i-1][1])}</a>' if i > 0 else "<span></span>"
    nxt = f'<a href="{nav[i+1][0]}">{html.escape(nav[i+1][1])} →</a>' if 0 <= i < len(nav) - 1 else "<span></span>"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} – {TITLE}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="stylesheet" href="style.css">'
            + ('<link rel="stylesheet" href="katex/katex.min.css"><script defer src="katex/katex.min.js"></script>'
               if 'class="math ' in body + desc else "")
            + ('<script src="plotly.min.js"></script>' if "Plotly.newPlot" in body else "") +
            '<script defer src="site.js"></script>'
            f'</head><body><nav><a class="home" href="index.html">{TITLE}</a>'
            '<input id="tvs-search" type="search" placeholder="Search the docs" aria-label="Search the docs"'
            ' autocomplete="off">'
            f'<div id="tvs-results" hidden></div>{links}</nav><main>'
            f'<h1>{html.escape(title)}</h1>' + (f'<p class="desc">{desc}</p>' if desc else "")
            + f'{body}<div class="pager">{prev}{nxt}</div></main></body></html>')


def process_notebooks() -> tuple[Path, dict[str, str]]:
    """nbdev's processing half of nbdev_docs (`nbdev.serve.proc_nbs`: show_doc cells run, directives applied; needs no
    Quarto) into its `_proc` cache, in one worker process; a notebook that fails is named instead of stopping the
    others: returns (cache, {notebook path relative to nbs/: the error})."""
    import nbdev.serve
    from fastcore.parallel import parallel
    failed = {}
    def keep_going(f, items, *args, **kwargs):       # proc_nbs's own parallel map, collecting each notebook's error
        items = list(items)
        results = parallel(f, items, *args, return_exceptions=True, **kwargs)
        for (src, *_), r in zip(items, results):
            if isinstance(r, BaseException):
                lines = str(r).strip().splitlines() or [type(r).__name__]     # nbdev: "Error in ... cell N :", the cell
                failed[src.relative_to(ROOT / "nbs").as_posix()] = " ".join(dict.fromkeys([lines[0], lines[-1]]))
        return results
    nbdev.serve.parallel = keep_going
    try: proc = Path(nbdev.serve.proc_nbs(str(ROOT / "nbs"), n_workers=1))
    finally: nbdev.serve.parallel = parallel
    return proc, failed


def render_site() -> tuple[list[tuple[str, str, str, str]], dict[str, str]]:
    """Every notebook nbdev could process as (href, title, description HTML, body HTML), index first, then in file
    order; and the ones it could not, with their error."""
    proc, failed = process_notebooks()
    nbs = sorted(p for p in proc.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
                 and (ROOT / "nbs" / p.relative_to(proc)).exists()      # _proc is a cache: a deleted notebook lingers,
                 and p.relative_to(proc).as_posix() not in failed)      # a failed one keeps its last good version
    nbs.sort(key=lambda p: (p.name != "index.ipynb", p.relative_to(proc).as_posix()))
    rendered = []
    for p in nbs:
        meta, body = render_nb(p)
        body = re.sub(r"<h1>.*?</h1>", "", body, count=1) if meta.get("title") else body
        rel = p.relative_to(proc)
        name = rel.with_suffix("").as_posix().replace("/", "-")
        href = meta.get("output-file") or ("index.html" if p.name == "index.ipynb" else f"{name}.html")
        if len(rel.parts) > 1: href = "-".join(rel.parts[:-1]) + "-" + href   # nbs/production/flow -> production-flow.html
        desc = md_inline(str(meta.get("description", "")))
        rendered.append((href, str(meta.get("title") or p.stem), desc, anchor_headings(body)))
    return rendered, failed


def write_site(out: Path, rendered: list[tuple[str, str, str, str]]) -> list[Path]:
    "Write the pages, their assets (style, site.js, KaTeX and plotly.js when used) and the search index into `out`."
    nav = [(h, t) for h, t, _, _ in rendered]
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "style.css").write_text(CSS, encoding="utf-8")
    shutil.copy2(ASSETS / "site.js", out / "site.js")
    if any('class="math ' in body + desc for _, _, desc, body in rendered):
        shutil.copytree(ASSETS / "katex", out / "katex", ignore=shutil.ignore_patterns("*.md"))
    if any("Plotly.newPlot" in body for *_, body in rendered):
        from plotly.offline import get_plotlyjs
        (out / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
    index = [e for href, title, desc, body in rendered for e in search_entries(href, title, desc, body)]
    (out / "search-index.js").write_text("window.TVS_SEARCH_INDEX = " + json.dumps(index, ensure_ascii=False)
                                         .replace("</", "<\\/") + ";\n", encoding="utf-8")
    written = []
    for href, title, desc, body in rendered:
        (out / href).write_text(page(title, desc, body, nav, href), encoding="utf-8")
        written.append(out / href)
    return written


def build_offline(out: Path) -> tuple[list[Path], dict[str, str]]:
    "Build the site into `out`: its pages, and the notebooks that could not be processed (with their error)."
    rendered, failed = render_site()
    return write_site(out, rendered), failed


def check(out: Path, pages: list[Path], failed: dict[str, str] | None = None) -> list[str]:
    "Every notebook has a page, the index links to every page, and no page needs the network."
    problems = [f"{nb}: nbdev could not process it: {err}" for nb, err in (failed or {}).items()]
    nbs = [p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
           and p.relative_to(ROOT / "nbs").as_posix() not in (failed or {})]
    if len(set(pages)) != len(nbs): problems.append(f"{len(nbs)} notebooks but {len(set(pages))} distinct pages (two notebooks share an output file?)")
    index = (out / "index.html").read_text(encoding="utf-8") if (out / "index.html").exists() else ""
    if not index: problems.append("no index.html")
    for p in pages:
        text = p.read_text(encoding="utf-8")
        if p.name != "index.html" and f'href="{p.name}"' not in index: problems.append(f"index does not link {p.name}")
        if re.search(r'<(script|link)[^>]+(src|href)="https?://', text): problems.append(f"{p.name} loads a remote asset")
        if "<h1>" not in text: problems.append(f"{p.name} has no title")
        for href in re.findall(r'href="([^"#:]+\.html)(?:#[^"]*)?"', text):     # every internal link resolves
            if not (out / href).exists(): problems.append(f"{p.name} links to a missing page {href}")
    return list(dict.fromkeys(problems))


# ---- The browser check: every page in headless Chromium, driven over the DevTools protocol ---------------------------
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
NO_BROWSER = ("no headless Chromium on PATH (chromium, chromium-browser or google-chrome): "
              "apt-get install chromium to run the browser check")


def find_browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


class CDP:
    """Headless Chromium driven over `--remote-debugging-pipe` (commands on its fd 3, answers on fd 4: no port).
    Every wait is on a message (an answer or an event), bounded by `timeout` seconds; the bound only turns a hang
    into an error, it decides nothing."""

    def __init__(self, exe: str, profile: Path, timeout: float = 120.0):
        import fcntl
        cmd_r, self._cmd_w = os.pipe()
        self._ans_r, ans_w = os.pipe()
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (cmd_r, ans_w)]   # out of the way of fds 3 and 4
        def wire():
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)
        self.timeout, self._buf, self._id, self.events = timeout, b"", 0, []
        self._log = open(profile.with_suffix(".log"), "wb")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking", f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, preexec_fn=wire, pass_fds=(3, 4))
        for fd in (cmd_r, ans_w, *high): os.close(fd)

    def _gone(self, what: str) -> RuntimeError:
        self._log.flush()
        log = Path(self._log.name).read_bytes()[-1500:].decode(errors="replace")
        return RuntimeError(f"the browser {what}; its log ends with:\n{log}")

    def _read(self) -> dict:
        import select
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._ans_r], [], [], self.timeout)
            chunk = os.read(self._ans_r, 1 << 20) if ready else b""
            if not chunk:
                raise self._gone("closed its pipe" if ready else f"said nothing for {self.timeout:.0f} s")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        "Send one command and return its result; events read meanwhile are kept in `events`."
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}} | ({"sessionId": session} if session else {})
        try: os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError: raise self._gone("closed its pipe") from None
        while True:
            m = self._read()
            if m.get("id") == self._id:
                if "error" in m: raise RuntimeError(f"{method}: {m['error'].get('message')}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, session: str | None = None) -> dict:
        "Block until the event `method` arrives (kept in `events` too)."
        for i, m in enumerate(self.events):
            if m.get("method") == method and m.get("sessionId") == session: return self.events.pop(i)
        while True:
            m = self._read()
            if m.get("method") == method and m.get("sessionId") == session: return m
            self.events.append(m)

    def close(self):
        try: self.call("Browser.close")
        except (RuntimeError, OSError): pass
        try: self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._ans_r): os.close(fd)
        self._log.close()


# Run in each page once it has loaded: waits for the fonts, then reports what the check asserts. The searches wait on
# site.js's `tvs-search-done` event (bounded: a search that never answers is reported, not waited on forever).
PAGE_PROBE = r"""(async (title) => {
  await document.fonts.ready;
  const main = document.querySelector('main');
  const math = [...document.querySelectorAll('.math')];
  const text = main ? main.cloneNode(true) : document.createElement('main');
  text.querySelectorAll('pre,code,script,style,.katex,.out').forEach(e => e.remove());
  const raw = text.textContent.match(/\$\$[^$]+\$\$|\$[^\s$](?:[^$]*?[^\s$\\])?\$(?!\d)/g) || [];
  const box = document.getElementById('tvs-search');
  const run = q => new Promise(done => {
    const timer = setTimeout(() => done(null), 30000);
    document.addEventListener('tvs-search-done', () => {
      clearTimeout(timer);
      done([...document.querySelectorAll('#tvs-results a.hit')].map(a => a.getAttribute('href')));
    }, {once: true});
    box.value = q;
    box.dispatchEvent(new Event('input'));
  });
  const found = box ? await run(title) : undefined, nothing = box ? await run('zqxj-no-such-term') : undefined;
  return {math: math.length, typeset: math.filter(e => e.querySelector('.katex')).length,
          katex_errors: [...document.querySelectorAll('.katex-error')].map(e => e.title || e.textContent),
          bad_fonts: [...document.fonts].filter(f => f.status === 'error').map(f => f.family),
          raw: raw.slice(0, 3), found, nothing};
})"""


def _event_errors(events: list, session: str) -> list[str]:
    "Console errors, uncaught exceptions, failed loads and non-local requests among a page's events."
    errs = []
    for m in events:
        if m.get("sessionId") != session: continue
        kind, p = m.get("method"), m.get("params", {})
        if kind == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            errs.append("uncaught: " + (d.get("exception", {}).get("description") or d.get("text", "")).splitlines()[0])
        elif kind == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = (a.get("value", a.get("description", "")) for a in p.get("args", []))
            errs.append("console.error: " + " ".join(map(str, args)))
        elif kind == "Log.entryAdded" and p["entry"].get("level") == "error":
            errs.append(f"{p['entry'].get('source')}: {p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
        elif kind == "Network.loadingFailed" and not p.get("canceled"):
            errs.append(f"load failed: {p.get('errorText')}")
        elif kind == "Network.requestWillBeSent" and not p["request"]["url"].startswith(("file:", "data:", "about:")):
            errs.append(f"requested a non-local URL: {p['request']['url'][:120]}")
    return list(dict.fromkeys(errs))


def _probe_problems(name: str, v: dict, title: str) -> list[str]:
    "What PAGE_PROBE found wrong on page `name`."
    problems = []
    if v["typeset"] != v["math"]:
        problems.append(f"{name}: {v['math'] - v['typeset']} of {v['math']} formulas not typeset")
    problems += [f"{name}: KaTeX error: {e}" for e in v["katex_errors"][:3]]
    problems += [f"{name}: font failed to load: {f}" for f in dict.fromkeys(v["bad_fonts"])]
    problems += [f"{name}: math left as raw text: {t[:60]!r}" for t in v["raw"]]
    if v["found"] is None or v["nothing"] is None:
        problems.append(f"{name}: the search box gave no answer")
    elif not any(h.split("#")[0] == name for h in v["found"]):
        problems.append(f"{name}: searching its title {title!r} does not find it (got {v['found'][:3]})")
    elif v["nothing"]:
        problems.append(f"{name}: a nonsense search found {v['nothing'][:3]}")
    return problems


def _check_page(cdp: CDP, session: str, page_path: Path) -> list[str]:
    "Load one page in the browser's tab, wait for its load event, run the probe; its problems."
    cdp.events.clear()
    cdp.call("Page.navigate", {"url": page_path.resolve().as_uri()}, session=session)
    cdp.wait_event("Page.loadEventFired", session)
    title = html.unescape(re.search(r"<h1[^>]*>(.*?)</h1>", page_path.read_text(encoding="utf-8"), re.S)[1])
    probe = {"expression": f"{PAGE_PROBE}({json.dumps(title)})", "awaitPromise": True, "returnByValue": True}
    r = cdp.call("Runtime.evaluate", probe, session=session)
    if "exceptionDetails" in r: return [f"{page_path.name}: the probe failed: {r['exceptionDetails'].get('text')}"]
    errors = [f"{page_path.name}: {e}" for e in _event_errors(cdp.events, session)]
    return errors + _probe_problems(page_path.name, r["result"]["value"], title)


def browser_check(pages: list[Path], exe: str) -> list[str]:
    """Open every page from disk in headless Chromium: no console error, uncaught exception, failed load or request
    off the disk; every math span typeset by KaTeX (no KaTeX error, no font that failed, no `$...$` left as text);
    the search box finds the page by its title (its <h1>) and nothing for nonsense."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="tvs-docs-browser-") as tmp:
        cdp = CDP(exe, Path(tmp) / "profile")
        try:
            target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"): cdp.call(f"{domain}.enable", session=session)
            for p in pages: problems += _check_page(cdp, session, p)
        except RuntimeError as e:
            problems.append(f"headless {Path(exe).name} failed: {e}")
        finally:
            cdp.close()
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="build into a temp dir and verify the pages")
    ap.add_argument("--out", default=str(ROOT / "_docs"))
    args = ap.parse_args()
    if shutil.which("quarto") and not args.check:     # _quarto.yml serves KaTeX from the site's katex/, not a CDN
        from nbdev.serve import proc_nbs
        shutil.copytree(ASSETS / "katex", Path(proc_nbs(str(ROOT / "nbs"))) / "katex", dirs_exist_ok=True)
        return subprocess.run(["nbdev_docs"], cwd=ROOT).returncode
    out = Path(tempfile.mkdtemp(prefix="tvs-docs-")) if args.check else Path(args.out)
    start = time.perf_counter()
    pages, failed = build_offline(out)
    built = time.perf_counter()
    if args.check:
        problems = check(out, pages, failed)
        exe = find_browser()
        if exe: problems += browser_check(pages, exe)
        browsed = f", browser check {time.perf_counter() - built:.1f} s" if exe else ""
        print(f"docs-check: built in {built - start:.1f} s{browsed}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        for p in problems: print("docs-check: " + p, file=sys.stderr)
        if not exe: print(f"docs-check: SKIPPED the browser check: {NO_BROWSER}", file=sys.stderr)
        if problems: return 1
        print(f"docs-check: {len(pages)} pages built offline, all linked from the index"
              + (f"; in {Path(exe).name}: no console errors, math typeset, search finds every page" if exe else ""))
        return 0
    for nb, err in failed.items(): print(f"docs: {nb} left out: nbdev could not process it: {err}", file=sys.stderr)
    print(f"docs: {len(pages)} pages in {out} (open {out / 'index.html'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
