"""The offline docs site (tools/build_docs.py): math is found before the markdown conversion (so `_`, `*`, `|` in TeX
survive) and typeset by the vendored KaTeX, descriptions and docstrings render their inline code, code blocks are
highlighted, and the search box searches a local index. The browser check `make docs-check` runs over the real site is
exercised here on small sites, good and broken on purpose: each break is reported. The browser tests are skipped,
saying why, when no Chromium is on PATH (`apt-get install chromium`)."""
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import build_docs as docs  # noqa: E402  (tools/ is not a package)

BROWSER = docs.find_browser()
needs_browser = pytest.mark.skipif(BROWSER is None, reason=docs.NO_BROWSER)


def test_math_is_protected_from_markdown():
    out = docs._md(r"Weights $w_i = x_i * y_i$ with $|w|_1 \le 1$ and *emphasis*.")
    assert '<span class="math inline">w_i = x_i * y_i</span>' in out          # no <em> eaten out of the TeX
    assert r'<span class="math inline">|w|_1 \le 1</span>' in out and "<em>emphasis</em>" in out
    assert docs._md("$$\n\\sum_i w_i = 1\n$$") == '<p><span class="math display">\\sum_i w_i = 1</span></p>\n'
    table = docs._md("| a | b |\n|---|---|\n| $|x|$ | $a_1 * b_1$ |")
    assert '<td><span class="math inline">|x|</span></td>' in table             # the | in TeX is not a cell border
    assert '<span class="math inline">x &lt; y &amp; z</span>' in docs._md("$x < y & z$")   # text, read back as TeX


def test_dollars_that_are_not_math():
    assert docs._md("costs $5 and $10") == "<p>costs $5 and $10</p>\n"          # pandoc's rule: `$` then a digit closes nothing
    assert docs._md(r"a literal \$x\$") == "<p>a literal $x$</p>\n"
    assert docs._md("`$x_1$` in code") == "<p><code>$x_1$</code> in code</p>\n"
    fenced = docs._md('```python\ns = "$a_1$"\n```')
    assert "math" not in fenced and "$a_1$" in fenced


def test_summaries_and_docstrings_render_inline_code():
    assert docs.md_inline("`BacktestEngine`: a *walk-forward* run at $t$") == \
        '<code>BacktestEngine</code>: a <em>walk-forward</em> run at <span class="math inline">t</span>'
    assert docs._md("*Output of `simulate`, relative to `start`.*") == \
        "<p><em>Output of <code>simulate</code>, relative to <code>start</code>.</em></p>\n"
    assert docs._md("*so it can sit in a <script>.*") == "<p><em>so it can sit in a &lt;script&gt;.</em></p>\n"   # prose, not a tag


def test_a_table_in_a_list_item_is_a_table():
    out = docs._md("- **Logics**:\n\n  | logic | window |\n  |---|---|\n  | `momentum` | $t-k$ |\n")
    assert "<li><p><strong>Logics</strong>:</p>\n<table>" in out
    assert '<td><code>momentum</code></td>\n  <td><span class="math inline">t-k</span></td>' in out


def test_code_blocks_are_highlighted():
    out = docs._md("```python\ndef f(x): return 1\n```")
    assert out.startswith('<pre class="highlight">') and '<span class="k">def</span>' in out
    assert docs._md("```nosuchlang\na < b\n```") == '<pre class="highlight"><code>a &lt; b\n</code></pre>\n'


def test_headings_get_pandoc_anchors():
    body = docs.anchor_headings("<h2>Covariance estimators</h2><h3>LedoitWolf</h3><h3>LedoitWolf</h3><h3>_bounded_qp</h3>")
    assert body == ('<h2 id="covariance-estimators">Covariance estimators</h2><h3 id="ledoitwolf">LedoitWolf</h3>'
                    '<h3 id="ledoitwolf-1">LedoitWolf</h3><h3 id="_bounded_qp">_bounded_qp</h3>')


def test_search_entries():
    body = docs.anchor_headings('<p>Intro text.</p><h2>Kernels</h2><p>The <code>hrp</code> kernel.</p>'
                                '<pre class="highlight">code_is_not_indexed()</pre><div class="out"><pre>output</pre></div>'
                                '<a href="x">source</a><h3>Empty</h3>')
    assert docs.search_entries("a.html", "Allocation", "The <code>pillar</code>.", body) == [
        {"t": "Allocation", "h": "", "u": "a.html", "x": "The pillar. Intro text."},
        {"t": "Allocation", "h": "Kernels", "u": "a.html#kernels", "x": "The hrp kernel."},
        {"t": "Allocation", "h": "Empty", "u": "a.html#empty", "x": ""}]


MATH_PAGE = docs._md("The optimum: $x_i^* = \\nu a_i$ for free $i$, and\n\n$$\\min_x \\tfrac12 x^\\top Q x$$")


def site(tmp_path, extra=None):
    "A two-page site written by the docs build's own writer; `extra` adds (href, title, body) pages."
    pages = [("index.html", "Home", "The <code>site</code>.", "<h2>Start</h2><p>Nothing to see.</p>"),
             ("solvers.html", "Solvers", "", docs.anchor_headings("<h2>Bounded QP</h2>" + MATH_PAGE + "<p>A quokka.</p>"))]
    pages += [(h, t, "", b) for h, t, b in extra or []]
    return docs.write_site(tmp_path / "site", pages)


def test_the_site_has_its_assets(tmp_path):
    site(tmp_path)
    out = tmp_path / "site"
    assert (out / "katex" / "katex.min.js").exists() and (out / "katex" / "LICENSE").exists()
    assert len(list((out / "katex" / "fonts").glob("*.woff2"))) == 20
    solvers = (out / "solvers.html").read_text(encoding="utf-8")
    assert 'href="katex/katex.min.css"' in solvers and 'id="tvs-search"' in solvers
    assert "katex" not in (out / "index.html").read_text(encoding="utf-8")   # KaTeX only where there is math


@needs_browser
def test_a_good_site_passes(tmp_path):
    assert docs.browser_check(site(tmp_path), BROWSER) == []


@needs_browser
def test_missing_katex_is_reported(tmp_path):
    pages = site(tmp_path)
    (tmp_path / "site" / "katex" / "katex.min.js").unlink()
    problems = docs.browser_check(pages, BROWSER)
    assert "solvers.html: 3 of 3 formulas not typeset" in problems
    assert any(p.startswith("solvers.html: console.error: math: KaTeX did not load") for p in problems)
    assert not any(p.startswith("index.html") for p in problems)


@needs_browser
def test_missing_fonts_are_reported(tmp_path):
    pages = site(tmp_path)
    shutil.rmtree(tmp_path / "site" / "katex" / "fonts")
    problems = docs.browser_check(pages, BROWSER)
    assert any(p.startswith("solvers.html: font failed to load: KaTeX_") for p in problems), problems


@needs_browser
def test_raw_math_js_errors_and_remote_requests_are_reported(tmp_path):
    pages = site(tmp_path, [("raw.html", "Raw", "<p>Built without the math step: $x_1$ and $$y$$.</p>"),
                            ("broken.html", "Broken", "<script>noSuchFunction()</script>"),
                            ("remote.html", "Remote", '<img src="http://127.0.0.1:9/x.png">')])
    problems = docs.browser_check(pages, BROWSER)
    assert "raw.html: math left as raw text: '$x_1$'" in problems and "raw.html: math left as raw text: '$$y$$'" in problems
    assert "broken.html: uncaught: ReferenceError: noSuchFunction is not defined" in problems
    assert "remote.html: requested a non-local URL: http://127.0.0.1:9/x.png" in problems
    assert not any(p.startswith(("index.html", "solvers.html")) for p in problems)


@needs_browser
def test_a_search_that_finds_nothing_is_reported(tmp_path):
    pages = site(tmp_path)
    (tmp_path / "site" / "search-index.js").unlink()
    problems = docs.browser_check(pages, BROWSER)
    assert "index.html: console.error: search: search-index.js did not load" in problems
    assert any(p.startswith("solvers.html: searching its title 'Solvers' does not find it") for p in problems)


def _process(item):
    "Stands in for nbdev's per-notebook processing: the notebook b fails like a show_doc cell does."
    if item[0].name == "b.ipynb": raise Exception("Error in notebook: B in cell 3 :\n#| echo: false\nshow_doc(f)")
    return item[0].name


def test_a_notebook_nbdev_cannot_process_is_named_and_the_others_go_on(monkeypatch, tmp_path):
    import nbdev.serve
    real = nbdev.serve.parallel
    nbs = docs.ROOT / "nbs"
    def proc_nbs(path, n_workers):                   # what nbdev.serve.proc_nbs does: one parallel map over the notebooks
        assert nbdev.serve.parallel(_process, [(nbs / n, None, None) for n in ("a.ipynb", "b.ipynb", "c.ipynb")],
                                    n_workers=1, threadpool=True)[::2] == ["a.ipynb", "c.ipynb"]
        return tmp_path
    monkeypatch.setattr(nbdev.serve, "proc_nbs", proc_nbs)
    assert docs.process_notebooks() == (tmp_path, {"b.ipynb": "Error in notebook: B in cell 3 : show_doc(f)"})
    assert nbdev.serve.parallel is real
    problems = docs.check(tmp_path, [], {"b.ipynb": "boom"})
    assert problems[0] == "b.ipynb: nbdev could not process it: boom" and "no index.html" in problems


def test_without_a_browser_only_the_browser_part_is_skipped_and_said(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(docs, "build_offline", lambda out: (site(tmp_path), {}))
    monkeypatch.setattr(docs, "check", lambda out, pages, failed: calls.append("check") or [])
    monkeypatch.setattr(docs, "browser_check", lambda pages, exe: calls.append(exe) or ["index.html: broken"])
    monkeypatch.setattr(sys, "argv", ["build_docs.py", "--check"])
    monkeypatch.setattr(docs, "find_browser", lambda: None)
    assert docs.main() == 0 and calls == ["check"]
    out = capsys.readouterr()
    assert f"docs-check: SKIPPED the browser check: {docs.NO_BROWSER}" in out.err and "2 pages built offline" in out.out
    monkeypatch.setattr(docs, "find_browser", lambda: "/usr/bin/chromium")
    assert docs.main() == 1 and calls == ["check", "check", "/usr/bin/chromium"]
    assert "docs-check: index.html: broken" in capsys.readouterr().err


def test_a_browser_that_dies_is_a_problem_not_a_crash(tmp_path):
    problems = docs.browser_check(site(tmp_path), "/bin/false")
    assert len(problems) == 1 and problems[0].startswith("headless false failed: the browser closed its pipe")
