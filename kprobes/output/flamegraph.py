"""A self-contained interactive flame graph (SVG with inline CSS and JS).

Hand-written: the Python packages that draw flame graphs are bound to a
profiler's own data (cProfile, py-spy) or ship a separate binary; this one
takes (root-first frames, count) pairs. The SVG opens in any browser with no
network access: hovering a frame shows its name, count and share, a click
zooms to it (its ancestors span the width, others hide), ``Reset zoom``
undoes that, and ``Search`` (or Ctrl-F) highlights frames matching a
regular expression and shows their share.

>>> svg = flamegraph_svg([(["main", "top", "leaf"], 3), (["main", "other"], 1)])
>>> svg.count('class="f"'), "leaf" in svg
(5, True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from html import escape

__all__ = ["flamegraph_svg"]

_W = 1200
_ROW = 16
_TOP = 36
_BOTTOM = 24
_PAD = 10
_CHAR = 7.0            # px per character at 12px monospace-ish


class _Node:
    __slots__ = ("name", "count", "kids")

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.kids: dict[str, _Node] = {}


def _color(name: str) -> str:
    h = hashlib.md5(name.encode(), usedforsecurity=False).digest()
    if name.startswith("0x"):
        return "rgb(190,190,190)"
    return f"rgb({205 + h[0] % 50},{80 + h[1] % 150},{h[2] % 55})"


def _fit(name: str, width: float) -> str:
    n = int((width - 6) / _CHAR)
    if n < 3:
        return ""
    return name if len(name) <= n else name[: n - 2] + ".."


def flamegraph_svg(stacks: Iterable[tuple[Sequence[str], int]], *, title: str = "Flame graph",
                   width: int = _W) -> str:
    """SVG text of a flame graph of ``stacks``: (frames root-first, count) pairs."""
    root = _Node("all")
    for frames, n in stacks:
        root.count += n
        node = root
        for f in frames:
            node = node.kids.setdefault(f, _Node(f))
            node.count += n
    rects: list[tuple[str, int, float, float]] = []     # name, depth, x (share), w (share)
    depth = 0
    total = root.count or 1

    def walk(node: _Node, d: int, x: float) -> None:
        nonlocal depth
        rects.append((node.name, d, x, node.count / total))
        depth = max(depth, d)
        for k in sorted(node.kids.values(), key=lambda k: k.name):
            walk(k, d + 1, x)
            x += k.count / total
    walk(root, 0, 0.0)
    inner = width - 2 * _PAD
    height = _TOP + (depth + 1) * _ROW + _BOTTOM
    out = [f'<?xml version="1.0" standalone="no"?>\n'
           f'<svg version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'xmlns="http://www.w3.org/2000/svg" data-total="{root.count}">',
           f"<style>{_CSS}</style>",
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f8f8f8"/>',
           f'<text id="title" x="{width / 2}" y="20" text-anchor="middle">{escape(title)}</text>',
           f'<text id="unzoom" class="btn" x="{_PAD}" y="20" visibility="hidden">Reset zoom</text>',
           f'<text id="search" class="btn" x="{width - _PAD}" y="20" text-anchor="end">Search</text>',
           f'<text id="details" x="{_PAD}" y="{height - 8}"> </text>',
           f'<text id="matched" x="{width - _PAD}" y="{height - 8}" text-anchor="end"> </text>',
           '<g id="frames">']
    for name, d, x, w in rects:
        count = round(w * total)
        px, pw = _PAD + x * inner, w * inner
        y = height - _BOTTOM - (d + 1) * _ROW
        e = escape(name, quote=True)
        out.append(
            f'<g class="f" data-name="{e}" data-x="{x!r}" data-w="{w!r}" data-d="{d}" '
            f'data-n="{count}"><title>{e} ({count} samples, {100 * w:.2f}%)</title>'
            f'<rect x="{px:.2f}" y="{y}" width="{pw:.2f}" height="{_ROW - 1}" '
            f'fill="{_color(name) if d else "rgb(230,120,90)"}" rx="2"/>'
            f'<text x="{px + 3:.2f}" y="{y + _ROW - 4}">{escape(_fit(name, pw))}</text></g>')
    out.append("</g>")
    out.append(f"<script><![CDATA[\nvar PAD={_PAD}, INNER={inner}, CHAR={_CHAR};\n{_JS}]]></script>")
    out.append("</svg>\n")
    return "\n".join(out)


_CSS = """
text { font-family: Verdana, sans-serif; font-size: 12px; fill: #000; }
#title { font-size: 17px; }
.btn { cursor: pointer; fill: #1a5fb4; }
.f { cursor: pointer; }
.f:hover rect { stroke: #000; stroke-width: 0.6; }
.f text { pointer-events: none; }
.hl rect { fill: rgb(230,0,230) !important; }
"""

_JS = r"""
var frames = Array.prototype.slice.call(document.querySelectorAll('.f'));
var total = +document.documentElement.getAttribute('data-total') || 1;
var details = document.getElementById('details');
var unzoom = document.getElementById('unzoom');
function fit(name, w) {
  var n = Math.floor((w - 6) / CHAR);
  if (n < 3) return '';
  return name.length <= n ? name : name.substring(0, n - 2) + '..';
}
function place(g, x, w) {
  var r = g.querySelector('rect'), t = g.querySelector('text');
  var px = PAD + x * INNER, pw = w * INNER;
  r.setAttribute('x', px.toFixed(2)); r.setAttribute('width', pw.toFixed(2));
  t.setAttribute('x', (px + 3).toFixed(2));
  t.textContent = fit(g.getAttribute('data-name'), pw);
  g.style.display = '';
}
function zoom(g) {
  var x0 = +g.getAttribute('data-x'), w0 = +g.getAttribute('data-w');
  var d0 = +g.getAttribute('data-d');
  frames.forEach(function (f) {
    var x = +f.getAttribute('data-x'), w = +f.getAttribute('data-w');
    var d = +f.getAttribute('data-d'), eps = 1e-12;
    if (d < d0 && x <= x0 + eps && x + w >= x0 + w0 - eps) place(f, 0, 1);
    else if (d >= d0 && x >= x0 - eps && x + w <= x0 + w0 + eps) place(f, (x - x0) / w0, w / w0);
    else f.style.display = 'none';
  });
  unzoom.setAttribute('visibility', d0 > 0 ? 'visible' : 'hidden');
}
function reset() { frames.forEach(function (f) {
  place(f, +f.getAttribute('data-x'), +f.getAttribute('data-w')); });
  unzoom.setAttribute('visibility', 'hidden'); }
function share(n) { return n + ' samples, ' + (100 * n / total).toFixed(2) + '%'; }
frames.forEach(function (g) {
  g.addEventListener('mouseover', function () {
    details.textContent = g.getAttribute('data-name') + ' (' + share(+g.getAttribute('data-n')) + ')';
  });
  g.addEventListener('mouseout', function () { details.textContent = ' '; });
  g.addEventListener('click', function () { zoom(g); });
});
unzoom.addEventListener('click', reset);
function search(re) {
  var rx, hit = 0, spans = [];
  try { rx = new RegExp(re); } catch (e) { return; }
  frames.forEach(function (f) {
    var on = re !== '' && rx.test(f.getAttribute('data-name'));
    f.classList.toggle('hl', on);
    if (on) {  // count each matched span once (not nested matches again)
      var x = +f.getAttribute('data-x'), w = +f.getAttribute('data-w');
      if (!spans.some(function (s) { return x >= s[0] - 1e-12 && x + w <= s[1] + 1e-12; })) {
        spans.push([x, x + w]); hit += +f.getAttribute('data-n');
      }
    }
  });
  document.getElementById('matched').textContent = re ? 'Matched: ' + share(hit) : ' ';
}
document.getElementById('search').addEventListener('click', function () {
  var re = prompt('Search frames (regular expression):', '');
  if (re !== null) search(re);
});
window.addEventListener('keydown', function (e) {
  if ((e.ctrlKey || e.metaKey) && e.key === 'f') {
    e.preventDefault(); var re = prompt('Search frames (regular expression):', '');
    if (re !== null) search(re);
  }
});
window.flamegraph = { zoom: zoom, reset: reset, search: search };
"""
