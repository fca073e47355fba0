// The offline docs site's script (written by tools/build_docs.py into every page's folder; no network, works from file://).
// 1. Math: the build wraps each $...$ / $$...$$ of the notebooks in <span class="math inline|display"> holding the TeX;
//    KaTeX (vendored, katex.min.js) typesets them once the page is parsed.
// 2. Search: the box in the sidebar searches search-index.js (built at docs time: every page's title, headings and text),
//    loaded on first use; results link to the page and heading. Each search ends with a `tvs-search-done` event on
//    document (detail: the number of results), which the docs check waits on.
(function () {
  "use strict";

  function typeset() {
    var spans = document.querySelectorAll(".math");
    if (!spans.length) return;
    if (!window.katex) { console.error("math: KaTeX did not load, " + spans.length + " formulas left as TeX"); return; }
    spans.forEach(function (el) {
      katex.render(el.textContent, el, {displayMode: el.classList.contains("display"), throwOnError: false});
    });
  }

  var index = null, waiting = [];
  function withIndex(fn) {
    if (index) return fn(index);
    waiting.push(fn);
    if (waiting.length > 1) return;
    var s = document.createElement("script");
    s.src = "search-index.js";
    s.onload = function () {
      index = window.TVS_SEARCH_INDEX || [];
      waiting.splice(0).forEach(function (f) { f(index); });
    };
    s.onerror = function () {
      console.error("search: search-index.js did not load");
      var list = document.getElementById("tvs-results");
      if (list) { list.textContent = "Search index unavailable"; list.hidden = false; }
      waiting.length = 0;
      document.dispatchEvent(new CustomEvent("tvs-search-done", {detail: -1}));
    };
    document.head.appendChild(s);
  }

  function score(entry, terms) {
    var title = entry.t.toLowerCase(), head = (entry.h || "").toLowerCase(), text = entry.x.toLowerCase(), total = 0;
    for (var i = 0; i < terms.length; i++) {
      var t = terms[i], s = 0;
      if (title.indexOf(t) >= 0) s += title === t ? 20 : 8;
      if (head.indexOf(t) >= 0) s += head === t ? 12 : 5;
      if (text.indexOf(t) >= 0) s += 1;
      if (!s) return 0;                                   // every term must occur somewhere in the entry
      total += s;
    }
    return total;
  }

  function snippet(text, terms) {
    var low = text.toLowerCase(), at = -1;
    for (var i = 0; i < terms.length && at < 0; i++) at = low.indexOf(terms[i]);
    var start = Math.max(0, at - 60), cut = text.slice(start, start + 180);
    return (start > 0 ? "…" : "") + cut + (start + 180 < text.length ? "…" : "");
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text) e.textContent = text;
    return e;
  }

  function show(box, list, entries) {
    var terms = box.value.toLowerCase().split(/\s+/).filter(Boolean);
    list.textContent = "";
    if (!terms.length) { list.hidden = true; return 0; }
    var hits = [];
    entries.forEach(function (e, i) { var s = score(e, terms); if (s) hits.push([s, i, e]); });
    hits.sort(function (a, b) { return b[0] - a[0] || a[1] - b[1]; });
    hits.slice(0, 20).forEach(function (hit) {
      var e = hit[2], a = el("a", "hit");
      a.href = e.u;
      a.appendChild(el("span", "hit-title", e.h ? e.t + " › " + e.h : e.t));
      a.appendChild(el("span", "hit-text", snippet(e.x, terms)));
      list.appendChild(a);
    });
    if (!hits.length) list.appendChild(el("div", "none", "No results for “" + box.value + "”"));
    list.hidden = false;
    return hits.length;
  }

  function search() {
    var box = document.getElementById("tvs-search"), list = document.getElementById("tvs-results");
    if (!box || !list) return;
    var run = function () {
      withIndex(function (entries) {
        var n = show(box, list, entries);
        document.dispatchEvent(new CustomEvent("tvs-search-done", {detail: n}));
      });
    };
    box.addEventListener("input", run);
    box.addEventListener("focus", function () { withIndex(function () {}); });
    box.addEventListener("keydown", function (ev) {
      var first = list.querySelector("a");
      if (ev.key === "Enter" && first) window.location.href = first.href;
      if (ev.key === "Escape") { box.value = ""; list.hidden = true; }
    });
  }

  function ready() { typeset(); search(); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
