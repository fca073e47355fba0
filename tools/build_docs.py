"""Build the docs site from the notebooks.

With Quarto on PATH this is `nbdev_docs` (the site described by _quarto.yml). Quarto cannot be
installed on machines without internet, so otherwise we render the same processed notebooks
(`nbdev.serve.proc_nbs`: show_doc cells executed, hidden cells removed, directives applied) to
self-contained offline HTML: one page per notebook, an index page, a sidebar and prev/next links.

    python tools/build_docs.py            # build into _docs/
    python tools/build_docs.py --check    # build into a temp dir and check every page (used by make test)
"""
from __future__ import annotations

import argparse
import configparser
import hashlib
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mistune
import yaml
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

ROOT = Path(__file__).resolve().parents[1]
CFG = configparser.ConfigParser(delimiters=["="])
CFG.read(ROOT / "settings.ini")
DOC_HOST = CFG["DEFAULT"]["doc_host"].rstrip("/") + "/"
TITLE = CFG["DEFAULT"]["title"]

_mistune = mistune.create_markdown(escape=False, plugins=["table", "strikethrough", "url"])


def _md(text: str) -> str:
    "Markdown to HTML, dropping Quarto-only attribute blocks such as `[source](url){target=\"_blank\"}`."
    return _mistune(re.sub(r"\)\{[^}\n]*\}", ")", text))
_fmt = HtmlFormatter(nowrap=True)

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


def page(title: str, desc: str, body: str, nav: list, cur: str) -> str:
    links = "".join(f'<a href="{h}" class="{"cur" if h == cur else ""}">{html.escape(t)}</a>' for h, t in nav)
    hrefs = [h for h, _ in nav]
    i = hrefs.index(cur) if cur in hrefs else -1
    prev = f'<a href="{nav[i-1][0]}">← {html.escape(nav[i-1][1])}</a>' if i > 0 else "<span></span>"
    nxt = f'<a href="{nav[i+1][0]}">{html.escape(nav[i+1][1])} →</a>' if 0 <= i < len(nav) - 1 else "<span></span>"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} – {TITLE}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="stylesheet" href="style.css">'
            + ('<script src="plotly.min.js"></script>' if "Plotly.newPlot" in body else "") +
            f'</head><body><nav><a class="home" href="index.html">{TITLE}</a>{links}</nav><main>'
            f'<h1>{html.escape(title)}</h1>' + (f'<p class="desc">{html.escape(desc)}</p>' if desc else "")
            + f'{body}<div class="pager">{prev}{nxt}</div></main></body></html>')


def build_offline(out: Path) -> list[Path]:
    from nbdev.serve import proc_nbs  # the processing half of nbdev_docs; needs no Quarto
    proc = Path(proc_nbs(str(ROOT / "nbs"), n_workers=1))
    nbs = sorted(p for p in proc.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    nbs.sort(key=lambda p: (p.name != "index.ipynb", p.relative_to(proc).as_posix()))
    rendered = []
    for p in nbs:
        meta, body = render_nb(p)
        body = re.sub(r"<h1>.*?</h1>", "", body, count=1) if meta.get("title") else body
        rel = p.relative_to(proc)
        name = rel.with_suffix("").as_posix().replace("/", "-")
        href = meta.get("output-file") or ("index.html" if p.name == "index.ipynb" else f"{name}.html")
        if len(rel.parts) > 1: href = "-".join(rel.parts[:-1]) + "-" + href   # nbs/production/flow -> production-flow.html
        rendered.append((href, meta.get("title") or p.stem, meta.get("description", ""), body))
    nav = [(h, t) for h, t, _, _ in rendered]
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "style.css").write_text(CSS, encoding="utf-8")
    if any("Plotly.newPlot" in body for *_, body in rendered):
        from plotly.offline import get_plotlyjs
        (out / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
    written = []
    for href, title, desc, body in rendered:
        (out / href).write_text(page(title, desc, body, nav, href), encoding="utf-8")
        written.append(out / href)
    return written


def check(out: Path, pages: list[Path]) -> list[str]:
    "Every notebook has a page, the index links to every page, and no page needs the network."
    problems = []
    nbs = [p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
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
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="build into a temp dir and verify the pages")
    ap.add_argument("--out", default=str(ROOT / "_docs"))
    args = ap.parse_args()
    if shutil.which("quarto") and not args.check:
        return subprocess.run(["nbdev_docs"], cwd=ROOT).returncode
    out = Path(tempfile.mkdtemp(prefix="tvs-docs-")) if args.check else Path(args.out)
    pages = build_offline(out)
    if args.check:
        problems = check(out, pages)
        shutil.rmtree(out, ignore_errors=True)
        for p in problems: print("docs-check: " + p, file=sys.stderr)
        if problems: return 1
        print(f"docs-check: {len(pages)} pages built offline, all linked from the index")
        return 0
    print(f"docs: {len(pages)} pages in {out} (open {out / 'index.html'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
