"""The map's scatter plot: a two-way Streamlit component (Components v2, no build step).

The browser fetches the points and their colours as typed arrays from the app's own routes
(fext/ui/server.py) and draws them with Plotly's WebGL scatter, loaded from the installed
plotly package. Hovering a point shows its thumbnail beside the cursor; a click, box or lasso
sends the selection back to Python as ids or as the lasso's polygon (Python finds the points
inside it over the whole collection, drawn or not). Once fewer than PICTURES_BELOW points are on
screen (zoomed in, or a small collection), each is drawn as its own picture from the atlases of
fext/atlas.py (static/pictures.js); the mouse wheel zooms.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import streamlit as st

from fext import atlas

PALETTE = ["#2f6fdf", "#e4572e", "#29a36a", "#f2a541", "#8e44ad", "#17becf", "#d62780",
           "#7f7f7f", "#bcbd22", "#8c564b", "#1f3b73", "#ff9896", "#98df8a", "#c5b0d5",
           "#9edae5", "#ffbb78", "#393b79", "#637939", "#8c6d31", "#843c39"]
INFERNO = ["#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925",
           "#fb9b06", "#f7d13d", "#fcffa4"]  # plotly's "Inferno" scale: the pictures' frames
MAX_POLYGON = 300  # vertices of a lasso sent back (the URL of its CSV must stay short)
PICTURES_BELOW = 2000  # points on screen under which each is drawn as its picture

HTML = """<div class="fext-map"><div class="fext-plot"></div>
<div class="fext-pics"></div>
<div class="fext-tip" hidden><div class="fext-cap"></div></div>
<div class="fext-legend"></div></div>"""

CSS = """
.fext-map { position: relative; }
.fext-plot { width: 100%; height: 620px; }
.fext-tip { position: absolute; z-index: 10; pointer-events: none; background: white;
  border: 1px solid #ccd; border-radius: 6px; padding: 4px; box-shadow: 0 2px 8px #0003;
  font: 12px sans-serif; max-width: 220px; }
.fext-tip img { width: 128px; height: 128px; object-fit: contain; display: block;
  image-rendering: auto; background: #f4f4f4; }
.fext-cap { margin-top: 3px; overflow-wrap: anywhere; }
.fext-sprites { position: absolute; top: 0; left: 0; pointer-events: none; }
.fext-pics { position: absolute; z-index: 5; top: 14px; left: 16px; pointer-events: none;
  font: 12px sans-serif; color: #445; background: #ffffffcc; border-radius: 4px; padding: 1px 6px; }
.fext-pics:empty { display: none; }
.fext-legend { font: 12px sans-serif; display: flex; flex-wrap: wrap; gap: 4px 14px;
  padding: 4px 8px; }
.fext-legend span::before { content: ""; display: inline-block; width: 10px; height: 10px;
  border-radius: 50%; margin-right: 5px; background: var(--c); }
"""

JS = (Path(__file__).parent / "static" / "pictures.js").read_text() + """
const PALETTE = __PALETTE__;
const INFERNO = __INFERNO__.map(h => [1, 3, 5].map(k => parseInt(h.slice(k, k + 2), 16)));

function inferno(t) {  // the colour the Inferno scale gives t in [0, 1], as 0xRRGGBB
  const f = Math.min(Math.max(t || 0, 0), 1) * (INFERNO.length - 1);
  const i = Math.min(Math.floor(f), INFERNO.length - 2);
  const [a, b] = [INFERNO[i], INFERNO[i + 1]], w = f - i;
  const [r, g, bl] = a.map((v, k) => Math.round(v + (b[k] - v) * w));
  return (r << 16) | (g << 8) | bl;
}
const MAX_POLYGON = __MAX_POLYGON__;

function loadPlotly(src) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__fextPlotly) {
    window.__fextPlotly = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = () => resolve(window.Plotly);
      s.onerror = () => reject(new Error("cannot load " + src));
      document.head.appendChild(s);
    });
  }
  return window.__fextPlotly;
}

async function arrays(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.arrayBuffer();
}

function polygonOf(ev) {
  let xs, ys;
  if (ev.lassoPoints) { xs = ev.lassoPoints.x; ys = ev.lassoPoints.y; }
  else if (ev.range) {
    const [x0, x1] = ev.range.x, [y0, y1] = ev.range.y;
    xs = [x0, x1, x1, x0]; ys = [y0, y0, y1, y1];
  } else return null;
  const step = Math.max(1, Math.ceil(xs.length / MAX_POLYGON));
  const poly = [];
  for (let i = 0; i < xs.length; i += step) poly.push(+xs[i].toPrecision(7), +ys[i].toPrecision(7));
  return poly;
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const root = parentElement.querySelector(".fext-map");
  const plot = root.querySelector(".fext-plot");
  const tip = root.querySelector(".fext-tip");
  const cap = tip.querySelector(".fext-cap");
  const legend = root.querySelector(".fext-legend");
  const key = data.points + "|" + data.colour + "|" + (data.pictures && data.pictures.base);
  if (root.dataset.key === key) return;  // the same map: keep what is drawn (and zoomed)
  root.dataset.key = key;
  root.dataset.ready = "";
  (async () => {
    const Plotly = await loadPlotly(data.plotly);
    const [pbuf, cbuf] = await Promise.all([arrays(data.points), arrays(data.colour)]);
    const n = pbuf.byteLength / 12;
    const ids = new Uint32Array(pbuf, 0, n);
    const x = new Float32Array(pbuf, 4 * n, n), y = new Float32Array(pbuf, 8 * n, n);
    const c = new Float32Array(cbuf);
    const size = n > 50000 ? 2 : n > 5000 ? 4 : 7;
    let marker, rgb;
    if (data.categories) {
      const hex = PALETTE.map(h => parseInt(h.slice(1), 16));
      rgb = Uint32Array.from(c, v => hex[v % hex.length]);
      marker = { size, opacity: 0.8, color: Array.from(c, v => PALETTE[v % PALETTE.length]) };
      legend.innerHTML = "";
      data.categories.slice(0, 40).forEach((name, i) => {
        const s = document.createElement("span");
        s.style.setProperty("--c", PALETTE[i % PALETTE.length]);
        s.textContent = name;
        legend.appendChild(s);
      });
      if (data.categories.length > 40) legend.append(`… ${data.categories.length - 40} more`);
    } else {
      const [lo, hi] = data.range, span = hi > lo ? hi - lo : 1;
      rgb = Uint32Array.from(c, v => inferno((v - lo) / span));
      marker = { size, opacity: 0.85, color: c, colorscale: "Inferno", cmin: data.range[0],
                 cmax: data.range[1], showscale: true,
                 colorbar: { title: { text: data.colour_name }, thickness: 12 } };
      legend.innerHTML = "";
    }
    const trace = { type: "scattergl", mode: "markers", x, y, marker, hoverinfo: "none" };
    const layout = { margin: { l: 10, r: 10, t: 10, b: 10 }, dragmode: "lasso", hovermode: "closest",
                     xaxis: { visible: false }, yaxis: { visible: false }, plot_bgcolor: "#fafafa",
                     paper_bgcolor: "rgba(0,0,0,0)", showlegend: false };
    await Plotly.react(plot, [trace], layout, { displaylogo: false, responsive: true, scrollZoom: true,
                                                modeBarButtonsToRemove: ["toImage"] });
    plot.removeAllListeners && plot.removeAllListeners();
    plot.__fextIds = ids;
    const old = plot.__fextPictures;  // the same map again (another colour): keep its atlases
    if (old && old.base !== (data.pictures && data.pictures.base)) old.dispose();
    plot.__fextPictures = null;
    if (data.pictures) {
      const layer = old && old.base === data.pictures.base ? old : pictureLayer(root, plot, data.pictures);
      plot.__fextPictures = layer;
      layer.points(x, y, rgb);
      plot.on("plotly_relayouting", (ev) => layer.view(ev));
      plot.on("plotly_relayout", () => layer.view());
      plot.on("plotly_afterplot", () => layer.view());
      layer.view();
    }
    plot.on("plotly_hover", (ev) => {
      const id = ids[ev.points[0].pointIndex];
      const box = root.getBoundingClientRect();
      const px = ev.event.clientX - box.left, py = ev.event.clientY - box.top;
      tip.style.left = (px + 230 > box.width ? px - 225 : px + 16) + "px";
      tip.style.top = Math.max(0, py - 70) + "px";
      tip.dataset.id = id;
      // made on the first hover: an image without a source would never count as loaded
      const img = tip.querySelector("img") || tip.insertBefore(document.createElement("img"), cap);
      img.src = data.base + "/thumb/" + id;
      cap.textContent = "";
      fetch(data.base + "/item/" + id).then(r => r.json()).then(it => {
        if (tip.dataset.id != it.id) return;
        cap.textContent = [it.path, it.label, "anomaly " + it.score.toFixed(3)].filter(Boolean).join(" · ");
      });
      tip.hidden = false;
    });
    plot.on("plotly_unhover", () => { tip.hidden = true; });
    plot.on("plotly_selecting", () => { tip.hidden = true; });
    plot.on("plotly_click", (ev) => {
      setStateValue("selection", { ids: [ids[ev.points[0].pointIndex]] });
    });
    plot.on("plotly_selected", (ev) => {
      const poly = ev && polygonOf(ev);
      if (poly) setStateValue("selection", { poly });
    });
    plot.on("plotly_deselect", () => setStateValue("selection", null));
    root.dataset.ready = "1";
  })().catch((e) => { legend.textContent = "The map could not be drawn: " + e.message; });
}
""".replace("__PALETTE__", json.dumps(PALETTE)).replace("__INFERNO__", json.dumps(INFERNO)) \
    .replace("__MAX_POLYGON__", str(MAX_POLYGON))

_component = st.components.v2.component("fext_map", html=HTML, css=CSS, js=JS,
                                        isolate_styles=False)


def component_key(key: str) -> str:
    """Streamlit refuses a component key holding "__" (its ID delimiter), and an extraction's
    folder name may hold one (mkdtemp's random part): the component gets a digest of the key."""
    return "fext-map-" + hashlib.blake2s(key.encode(), digest_size=8).hexdigest()


def scatter(*, base: str, plotly: str, colour: str, categories: list | None = None,
            value_range: list | None = None, colour_name: str = "", key: str,
            map_key: str | None = None):
    """Mount the map; returns the selection the user last made: {"ids": [...]},
    {"poly": [x1, y1, ...]} or None. With `map_key` (fext.ui.server.map_key) the points on
    screen are drawn as pictures once there are few enough, and the points' addresses name the
    map, so a browser never keeps those of a layout computed again."""
    fresh = f"?map={map_key}" if map_key else ""
    data = {"base": base, "points": f"{base}/points{fresh}",
            "colour": f"{base}/colour/{colour}{fresh}", "plotly": plotly,
            "categories": categories, "range": value_range, "colour_name": colour_name,
            "pictures": {"base": f"{base}/atlas/{map_key}", "block": atlas.BLOCK,
                         "side": atlas.SIDE, "thumb": atlas.THUMB, "below": PICTURES_BELOW}
            if map_key else None}
    result = _component(data=data, key=component_key(key), default={"selection": None},
                        on_selection_change=lambda: None)
    return result.selection
