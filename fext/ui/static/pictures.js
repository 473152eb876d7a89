/* The map's pictures. Once fewer than `below` points are on screen, each of them is drawn as its
   own picture, cut from the atlases the app serves (fext/atlas.py; fext/ui/server.py's
   atlas routes). Only the atlases of the points on screen are fetched: the atlases hold points
   that lie together on the map, so a zoomed-in view needs a few. Pictures are textured quads
   drawn with WebGL on a canvas inside Plotly's own WebGL layer, so Plotly's hover, selection
   outline and drag layers stay above them and keep working; canvas 2D draws them where WebGL is
   unavailable. Each picture is framed in its point's colour, so the legend (a label, a score)
   still reads on a map made of pictures. Prepended to the map component's module by
   fext/ui/scatter.py. */

const SPRITE_MIN = 28, SPRITE_MAX = 48;  // CSS pixels a side of one picture on the map
const KEEP_ATLASES = 24;  // atlases kept decoded beyond those on screen (4 MB of GPU memory each)
const FRAME = 2.5;  // CSS pixels of the frame in the point's colour

function webglSprites(canvas) {
  const gl = canvas.getContext("webgl", { alpha: true, premultipliedAlpha: true, antialias: false });
  if (!gl) return null;
  const compile = (type, src) => {
    const s = gl.createShader(type);
    gl.shaderSource(s, src);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  };
  const prog = gl.createProgram();
  gl.attachShader(prog, compile(gl.VERTEX_SHADER, `
    attribute vec2 a_xy; attribute vec2 a_uv; attribute vec2 a_at; attribute vec3 a_rgb;
    uniform vec2 u_css; varying vec2 v_uv; varying vec2 v_at; varying vec3 v_rgb;
    void main() {
      v_uv = a_uv; v_at = a_at; v_rgb = a_rgb;
      gl_Position = vec4(a_xy / u_css * vec2(2.0, -2.0) + vec2(-1.0, 1.0), 0.0, 1.0);
    }`));
  gl.attachShader(prog, compile(gl.FRAGMENT_SHADER, `
    precision mediump float; uniform sampler2D u_tex; uniform float u_frame;
    varying vec2 v_uv; varying vec2 v_at; varying vec3 v_rgb;
    void main() {  // v_at: where in the picture (0-1 across), so its edge is the frame
      float edge = min(min(v_at.x, 1.0 - v_at.x), min(v_at.y, 1.0 - v_at.y));
      gl_FragColor = edge < u_frame ? vec4(v_rgb, 1.0) : texture2D(u_tex, v_uv);
    }`));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
  const buf = gl.createBuffer();
  const aXY = gl.getAttribLocation(prog, "a_xy"), aUV = gl.getAttribLocation(prog, "a_uv");
  const aAt = gl.getAttribLocation(prog, "a_at"), aRGB = gl.getAttribLocation(prog, "a_rgb");
  const uCSS = gl.getUniformLocation(prog, "u_css"), uFrame = gl.getUniformLocation(prog, "u_frame");
  return {
    kind: "webgl",
    texture(bitmap) {
      const t = gl.createTexture();
      gl.bindTexture(gl.TEXTURE_2D, t);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, bitmap);
      return t;
    },
    drop(t) { gl.deleteTexture(t); },
    // groups: [{atlas: {image, w, h}, at: [x, y, cell, rgb, ...]}] (rgb: 0xRRGGBB); size: CSS
    // pixels a side
    draw(groups, size, clip, dpr, opts) {
      gl.viewport(0, 0, canvas.width, canvas.height);
      gl.disable(gl.SCISSOR_TEST);
      gl.clearColor(0, 0, 0, 0);
      gl.clear(gl.COLOR_BUFFER_BIT);
      if (!groups.length) return;
      gl.enable(gl.SCISSOR_TEST);  // pictures stay inside the plot area, as the points do
      gl.scissor(Math.round(clip.l * dpr), Math.round(canvas.height - (clip.t + clip.h) * dpr),
                 Math.round(clip.w * dpr), Math.round(clip.h * dpr));
      gl.useProgram(prog);
      gl.uniform2f(uCSS, canvas.width / dpr, canvas.height / dpr);
      gl.uniform1f(uFrame, FRAME / size);
      gl.bindBuffer(gl.ARRAY_BUFFER, buf);
      for (const a of [aXY, aUV, aAt, aRGB]) gl.enableVertexAttribArray(a);
      gl.vertexAttribPointer(aXY, 2, gl.FLOAT, false, 36, 0);
      gl.vertexAttribPointer(aUV, 2, gl.FLOAT, false, 36, 8);
      gl.vertexAttribPointer(aAt, 2, gl.FLOAT, false, 36, 16);
      gl.vertexAttribPointer(aRGB, 3, gl.FLOAT, false, 36, 24);
      const h = size / 2;
      for (const g of groups) {
        const { w: W, h: H } = g.atlas, n = g.at.length / 4;
        const v = new Float32Array(n * 54);
        for (let k = 0; k < n; k++) {
          const x = g.at[4 * k], y = g.at[4 * k + 1], cell = g.at[4 * k + 2], rgb = g.at[4 * k + 3];
          const r = (rgb >> 16) / 255, gr = ((rgb >> 8) & 255) / 255, b = (rgb & 255) / 255;
          const cx = cell % opts.side, cy = Math.floor(cell / opts.side);
          // half a texel in from the cell's edge: linear filtering never reaches a neighbour
          const u0 = (cx * opts.thumb + 0.5) / W, u1 = ((cx + 1) * opts.thumb - 0.5) / W;
          const v0 = (cy * opts.thumb + 0.5) / H, v1 = ((cy + 1) * opts.thumb - 0.5) / H;
          v.set([x - h, y - h, u0, v0, 0, 0, r, gr, b, x + h, y - h, u1, v0, 1, 0, r, gr, b,
                 x - h, y + h, u0, v1, 0, 1, r, gr, b, x - h, y + h, u0, v1, 0, 1, r, gr, b,
                 x + h, y - h, u1, v0, 1, 0, r, gr, b, x + h, y + h, u1, v1, 1, 1, r, gr, b], 54 * k);
        }
        gl.bindTexture(gl.TEXTURE_2D, g.atlas.image);
        gl.bufferData(gl.ARRAY_BUFFER, v, gl.STREAM_DRAW);
        gl.drawArrays(gl.TRIANGLES, 0, 6 * n);
      }
    },
  };
}

function canvasSprites(canvas) {
  const ctx = canvas.getContext("2d");
  return {
    kind: "canvas",
    texture: (bitmap) => bitmap,
    drop: (bitmap) => bitmap.close && bitmap.close(),
    draw(groups, size, clip, dpr, opts) {
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.save();
      ctx.beginPath();
      ctx.rect(clip.l, clip.t, clip.w, clip.h);
      ctx.clip();
      const h = size / 2, t = opts.thumb;
      ctx.lineWidth = FRAME;
      for (const g of groups) {
        for (let k = 0; k < g.at.length; k += 4) {
          const cell = g.at[k + 2];
          ctx.drawImage(g.atlas.image, (cell % opts.side) * t, Math.floor(cell / opts.side) * t, t, t,
                        g.at[k] - h, g.at[k + 1] - h, size, size);
          ctx.strokeStyle = "#" + g.at[k + 3].toString(16).padStart(6, "0");
          ctx.strokeRect(g.at[k] - h + FRAME / 2, g.at[k + 1] - h + FRAME / 2, size - FRAME, size - FRAME);
        }
      }
      ctx.restore();
    },
  };
}

/* The picture layer of one map: `opts` = {base, block, side, thumb, below} (fext/ui/scatter.py).
   `points(x, y, rgb)` gives it the drawn points and their colours (0xRRGGBB each), `view(ev)`
   redraws it for the plot's current axes
   (or the ranges a plotly_relayouting event carries, mid-drag). */
function pictureLayer(root, plot, opts) {
  const caption = root.querySelector(".fext-pics");
  const canvas = document.createElement("canvas");
  canvas.className = "fext-sprites";
  const atlases = new Map();  // atlas number -> {image, w, h, used} (image null while loading)
  let sprites = null, slots = null, asked = false, x = null, y = null, rgb = null, tick = 0;
  let lastEv = null;
  let disposed = false;
  root.dataset.pictures = "0";
  root.dataset.atlases = "0";
  root.dataset.atlas = opts.base;  // where its atlases come from (the benchmark reads it)

  function loadSlots() {  // on the first view with pictures: a zoomed-out map never needs them
    if (asked) return;
    asked = true;
    fetch(opts.base + "/slots")
      .then((r) => { if (!r.ok) throw new Error("atlas slots: " + r.status); return r.arrayBuffer(); })
      .then((b) => { slots = new Uint32Array(b); view(lastEv); })
      .catch((e) => { asked = false; caption.textContent = "The pictures could not be loaded: " + e.message; });
  }

  function attach() {
    // inside Plotly's WebGL layer, above its points and below its SVG overlays
    const host = plot.querySelector(".gl-container") || plot.querySelector(".svg-container");
    if (host && canvas.parentNode !== host) host.appendChild(canvas);
    if (!sprites) {
      try { sprites = webglSprites(canvas); } catch (e) { sprites = null; }
      sprites = sprites || canvasSprites(canvas);
      root.dataset.renderer = sprites.kind;
    }
  }

  function ranges(ev) {
    const fl = plot._fullLayout;
    const axis = (a) => {
      if (ev && ev[a + ".range[0]"] !== undefined) return [ev[a + ".range[0]"], ev[a + ".range[1]"]];
      if (ev && ev[a + ".range"]) return ev[a + ".range"];
      return fl[a].range;
    };
    return [axis("xaxis").map(Number), axis("yaxis").map(Number)];
  }

  function load(needed) {
    for (const b of needed) {
      if (atlases.has(b)) continue;
      const entry = { image: null, w: 0, h: 0, used: tick };
      atlases.set(b, entry);
      fetch(opts.base + "/" + b)
        .then((r) => { if (!r.ok) throw new Error("atlas " + b + ": " + r.status); return r.blob(); })
        .then((blob) => createImageBitmap(blob))
        .then((bitmap) => {
          if (atlases.get(b) !== entry) return bitmap.close();
          entry.w = bitmap.width;
          entry.h = bitmap.height;
          entry.image = sprites.texture(bitmap);
          if (sprites.kind === "webgl") bitmap.close();
          root.dataset.atlases = String(+root.dataset.atlases + 1);
          view(lastEv);
        })
        .catch(() => atlases.delete(b));  // asked again by the next view
    }
    // forget the least recently drawn atlases, never one on screen
    const kept = [...atlases].filter(([, a]) => a.image);
    if (kept.length > KEEP_ATLASES + needed.size) {
      kept.filter(([b]) => !needed.has(b)).sort((p, q) => p[1].used - q[1].used)
        .slice(0, kept.length - KEEP_ATLASES - needed.size)
        .forEach(([b, a]) => { sprites.drop(a.image); atlases.delete(b); });
    }
  }

  function view(ev) {
    lastEv = ev || null;
    const fl = plot._fullLayout;
    if (disposed || !x || !fl || !fl._size) return;
    attach();
    const s = fl._size, dpr = window.devicePixelRatio || 1;
    const W = Math.round(fl.width * dpr), H = Math.round(fl.height * dpr);
    if (canvas.width !== W || canvas.height !== H) {
      canvas.width = W;
      canvas.height = H;
      canvas.style.width = fl.width + "px";
      canvas.style.height = fl.height + "px";
    }
    const [[x0, x1], [y0, y1]] = ranges(ev);
    const on = [];
    for (let i = 0; i < x.length && on.length <= opts.below; i++) {
      if (x[i] >= x0 && x[i] <= x1 && y[i] >= y0 && y[i] <= y1) on.push(i);
    }
    const groups = new Map(), needed = new Set();
    let drawn = 0, size = SPRITE_MAX;
    tick += 1;
    if (on.length && on.length <= opts.below && !slots) loadSlots();
    else if (on.length && on.length <= opts.below) {
      const fx = s.w / (x1 - x0), fy = s.h / (y1 - y0);
      // as large as the points' spacing allows: the area of the SPRITE_MAX-sized cells they
      // occupy, shared among them (a tight cluster gets small pictures, scattered points large)
      const cells = new Set();
      for (const i of on) {
        cells.add(Math.floor((x[i] - x0) * fx / SPRITE_MAX) * 65536
                  + Math.floor((y1 - y[i]) * fy / SPRITE_MAX));
      }
      size = Math.max(SPRITE_MIN, Math.min(SPRITE_MAX, SPRITE_MAX * Math.sqrt(cells.size / on.length)));
      for (const i of on) {
        const b = Math.floor(slots[i] / opts.block);
        needed.add(b);
        const a = atlases.get(b);
        if (!a || !a.image) continue;
        a.used = tick;
        if (!groups.has(b)) groups.set(b, { atlas: a, at: [] });
        groups.get(b).at.push(s.l + (x[i] - x0) * fx, s.t + (y1 - y[i]) * fy, slots[i] % opts.block,
                              rgb[i]);
        drawn += 1;
      }
      load(needed);
    }
    sprites.draw([...groups.values()], size, { l: s.l, t: s.t, w: s.w, h: s.h }, dpr, opts);
    root.dataset.pictures = String(drawn);
    root.dataset.onscreen = String(on.length);  // counted up to one past `below`
    root.dataset.needed = String(needed.size);  // atlases under the view
    const below = opts.below.toLocaleString("en");
    caption.textContent = on.length > opts.below
      ? `Zoom in to see the pictures (they appear under ${below} points on screen)`
      : !on.length ? ""
      : `${drawn.toLocaleString("en")} image${drawn === 1 ? "" : "s"} drawn as pictures`
        + (drawn < on.length ? ` (${(on.length - drawn).toLocaleString("en")} loading)` : "");
  }

  return {
    base: opts.base,
    points(px, py, colours) { x = px; y = py; rgb = colours; },
    view,
    dispose() {  // another map in the same plot: its pictures go with it
      disposed = true;
      for (const a of atlases.values()) if (a.image) sprites.drop(a.image);
      atlases.clear();
      canvas.remove();
      caption.textContent = "";
    },
  };
}
