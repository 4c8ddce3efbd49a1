// page.js — draws a camoxpert page from the JSON in <script id="data"> (built into
// camoxpert by assets.c): the training report (report.c and runlog.c make the data,
// docs/REPORT.md lists it), or with data.kind "eval" the curves page of `camoxpert eval
// --plot` (cmd_eval.c; docs/METRICS.md), whose drawing the report reuses for a run's
// test-set scores (RUN/eval.json).
// Plain DOM and inline SVG, no library, nothing fetched. Any error is written into
// #status (data-state="error"), so a page that failed says so, to a person and to the
// browser test (tests/test_report.c), which also reads the counts left there.
(function () {
  'use strict';
  var status = document.getElementById('status');
  var errors = 0;
  function fail(msg) {
    errors++;
    status.setAttribute('data-state', 'error');
    status.setAttribute('data-errors', String(errors));
    status.textContent = 'The report could not be drawn completely: ' + msg;
  }
  window.addEventListener('error', function (e) { fail(e.message + ' (line ' + e.lineno + ')'); });

  var SVGNS = 'http://www.w3.org/2000/svg';
  var PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf',
                 '#7f7f7f', '#bcbd22'];
  var EXPERT_KIND = ['T', 'F', 'Ed', 'C'];  // texture, frequency, edge, contrast: the experts' cycle
  var counts = { charts: 0, heatmaps: 0, rows: 0, tables: 0 };

  // ---- small helpers ----------------------------------------------------------------------
  function el(tag, attrs, parent, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function sv(tag, attrs, parent) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function fin(v) { return typeof v === 'number' && isFinite(v); }
  function fmt(v) {
    if (!fin(v)) return '–';
    var a = Math.abs(v);
    if (a === 0) return '0';
    if (a >= 1e5 || a < 1e-3) return v.toExponential(2);
    if (a >= 100) return v.toFixed(1);
    return v.toPrecision(4);
  }
  function fmtInt(v) { return fin(v) ? Math.round(v).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',') : '–'; }
  function fmtDur(s) {
    if (!fin(s)) return '–';
    s = Math.round(s);
    var h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, x = s % 60;
    return h ? h + ' h ' + m + ' min' : m ? m + ' min ' + x + ' s' : x + ' s';
  }
  function expertName(e) { return EXPERT_KIND[e % 4] + e; }
  // A tick label with the decimals its step needs (short enough for the axis).
  function tickFmt(t, step) {
    if (t === 0) return '0';
    if (Math.abs(t) >= 1e5 || step < 1e-4) return t.toExponential(1);
    return t.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
  }
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
    var err = (hi - lo) / n / step;
    step *= err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1;
    var t = [], v = Math.ceil(lo / step) * step;
    for (; v <= hi + step * 1e-9; v += step) t.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return t;
  }

  // ---- charts -------------------------------------------------------------------------------
  // series: [{name, x: [...], y: [...], color, dash, dots}]; marks: [{stage2, resumes: [x], best: {x, y}}]
  var tip = el('div', { id: 'tip' }, document.body);
  function chart(parent, title, series, opt) {
    opt = opt || {};
    var card = el('div', { 'class': 'card' }, parent);
    el('div', { 'class': 'title' }, card, title);
    if (opt.hint) el('div', { 'class': 'hint' }, card, opt.hint);
    var W = 340, H = 190, L = 48, R = 10, T = 8, B = 26;
    var xs = [], ys = [];
    series.forEach(function (s) {
      for (var i = 0; i < s.x.length; i++) if (fin(s.y[i]) && fin(s.x[i])) { xs.push(s.x[i]); ys.push(s.y[i]); }
    });
    var svg = sv('svg', { 'class': 'chart', viewBox: '0 0 ' + W + ' ' + H, 'data-title': title }, card);
    counts.charts++;
    if (!xs.length) {
      sv('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, svg).textContent = 'no values logged yet';
      return card;
    }
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (opt.zero && y0 > 0) y0 = 0;
    if (opt.unit) { y0 = Math.min(y0, 0); y1 = Math.max(y1, opt.unitMax || 1); }
    if (opt.unitX) { x0 = Math.min(x0, 0); x1 = Math.max(x1, 1); }
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (y1 === y0) { var d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
    var pad = (y1 - y0) * 0.05; if (!opt.unit) { y0 -= opt.zero && y0 === 0 ? 0 : pad; y1 += pad; }
    function X(v) { return L + (v - x0) / (x1 - x0) * (W - L - R); }
    function Y(v) { return T + (1 - (v - y0) / (y1 - y0)) * (H - T - B); }
    var yt = niceTicks(y0, y1, 4);
    yt.forEach(function (t) {
      if (t < y0 || t > y1) return;
      sv('line', { 'class': 'gridline', x1: L, x2: W - R, y1: Y(t), y2: Y(t) }, svg);
      sv('text', { x: L - 4, y: Y(t) + 3, 'text-anchor': 'end' }, svg).textContent =
        tickFmt(t, yt.length > 1 ? yt[1] - yt[0] : Math.abs(t));
    });
    var xt = niceTicks(x0, x1, 5);
    xt.forEach(function (t) {
      if (t < x0 || t > x1 || (opt.integerX && t !== Math.round(t))) return;
      var edge = X(t) > W - R - 16;   // the last label ends at the frame instead of past it
      sv('text', { x: edge ? W - 2 : X(t), y: H - B + 13, 'text-anchor': edge ? 'end' : 'middle' }, svg).textContent =
        opt.integerX ? fmtInt(t) : tickFmt(t, xt.length > 1 ? xt[1] - xt[0] : 1);
    });
    sv('line', { 'class': 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }, svg);
    sv('line', { 'class': 'axis', x1: L, x2: L, y1: T, y2: H - B }, svg);
    sv('text', { 'class': 'xlabel', x: L, y: H - 2, 'text-anchor': 'start' }, svg).textContent = opt.xlabel || '';
    if (opt.ylabel)
      sv('text', { 'class': 'ylabel', x: 9, y: (T + H - B) / 2, 'text-anchor': 'middle',
                   transform: 'rotate(-90 9 ' + (T + H - B) / 2 + ')' }, svg).textContent = opt.ylabel;
    (opt.marks || []).forEach(function (m) {
      if (m.stage2 !== null && m.stage2 !== undefined && m.stage2 > x0 && m.stage2 < x1) {
        var l = sv('line', { 'class': 'stage2', x1: X(m.stage2), x2: X(m.stage2), y1: T, y2: H - B }, svg);
        sv('title', {}, l).textContent = 'stage 2 starts';
      }
      (m.resumes || []).forEach(function (r) {
        if (r < x0 || r > x1) return;
        var l = sv('line', { 'class': 'resume', x1: X(r), x2: X(r), y1: T, y2: H - B }, svg);
        sv('title', {}, l).textContent = 'resumed here';
      });
    });
    series.forEach(function (s) {
      var d = '', pen = false;
      for (var i = 0; i < s.x.length; i++) {
        if (!fin(s.y[i])) { pen = false; continue; }
        d += (pen ? 'L' : 'M') + X(s.x[i]).toFixed(1) + ' ' + Y(s.y[i]).toFixed(1);
        pen = true;
      }
      sv('path', { d: d, fill: 'none', stroke: s.color, 'stroke-width': 1.5, 'stroke-dasharray': s.dash || '',
                   'class': 'series' }, svg);
      if (s.dots || s.x.length <= 60)
        for (var k = 0; k < s.x.length; k++)
          if (fin(s.y[k])) sv('circle', { cx: X(s.x[k]), cy: Y(s.y[k]), r: 2, fill: s.color }, svg);
    });
    (opt.marks || []).forEach(function (m) {
      if (!m.best || !fin(m.best.y)) return;
      var cx = X(m.best.x), cy = Y(m.best.y), r = 6, pts = [];
      for (var i = 0; i < 10; i++) {
        var a = Math.PI / 2 + i * Math.PI / 5, rr = i % 2 ? r * 0.45 : r;
        pts.push((cx + rr * Math.cos(a)).toFixed(1) + ',' + (cy - rr * Math.sin(a)).toFixed(1));
      }
      var star = sv('polygon', { 'class': 'best', points: pts.join(' ') }, svg);
      sv('title', {}, star).textContent = 'best epoch ' + m.best.x + (m.best.run ? ' (' + m.best.run + ')' : '');
    });
    // Hover: the values of every series nearest the cursor's x.
    var cursor = sv('line', { 'class': 'cursor', y1: T, y2: H - B, visibility: 'hidden' }, svg);
    svg.addEventListener('mousemove', function (ev) {
      var box = svg.getBoundingClientRect();
      var xv = x0 + ((ev.clientX - box.left) / box.width * W - L) / (W - L - R) * (x1 - x0);
      var xf = opt.integerX ? fmtInt : fmt;
      var lines = [(opt.xlabel || 'x') + ' ' + xf(xv)];
      series.forEach(function (s) {
        var best = -1, bd = Infinity;
        for (var i = 0; i < s.x.length; i++) {
          var dd = Math.abs(s.x[i] - xv);
          if (dd < bd && fin(s.y[i])) { bd = dd; best = i; }
        }
        if (best >= 0) lines.push((s.name ? s.name + ': ' : '') + fmt(s.y[best]) + '  @' + xf(s.x[best]));
      });
      cursor.setAttribute('x1', X(Math.max(x0, Math.min(x1, xv))));
      cursor.setAttribute('x2', X(Math.max(x0, Math.min(x1, xv))));
      cursor.setAttribute('visibility', 'visible');
      tip.textContent = lines.join('\n');
      tip.style.display = 'block';
      tip.style.left = (ev.clientX + 14) + 'px';
      tip.style.top = (ev.clientY + 10) + 'px';
    });
    svg.addEventListener('mouseleave', function () { tip.style.display = 'none'; cursor.setAttribute('visibility', 'hidden'); });
    if (series.length > 1 && !opt.noLegend) {
      var lg = el('div', { 'class': 'legend' }, card);
      series.forEach(function (s) {
        var sw = el('span', { 'class': 'sw' }, lg);
        sw.style.background = s.color;
        if (s.dash) sw.style.background = 'repeating-linear-gradient(90deg,' + s.color + ' 0 4px,transparent 4px 7px)';
        lg.appendChild(document.createTextNode(s.name));
      });
    }
    return card;
  }

  // ---- scores and curves of `camoxpert eval` ------------------------------------------------
  // The columns papers print, each with its variant; MAE is the one where lower is better.
  var EVAL_COLS = [['Smeasure', 'Sα'], ['wFmeasure', 'Fβw'], ['MAE', 'MAE'], ['meanEm', 'Eφ mean'],
                   ['maxEm', 'Eφ max'], ['adpEm', 'Eφ adp'], ['meanFm', 'Fβ mean'], ['maxFm', 'Fβ max'],
                   ['adpFm', 'Fβ adp']];
  // The datasets of an eval JSON: the nested layout (--data-root, several methods), or the
  // one-folder layout with "overall" and "curves" at the top.
  function evalDatasets(doc) {
    if (doc.datasets) return doc.datasets;
    return [{ title: 'ground truth ' + (doc.gt || ''), caption: doc.n + ' images',
              methods: [{ method: doc.method || doc.pred || 'predictions', overall: doc.overall, curves: doc.curves }] }];
  }
  // A curve of the JSON (PySODMetrics' order: index i is threshold (255 - i) / 255) as x, y.
  function thresholds() {
    var t = [];
    for (var i = 0; i < 256; i++) t.push((255 - i) / 255);
    return t;
  }
  function evalSection(parent, doc) {
    var thr = thresholds();
    evalDatasets(doc).forEach(function (d) {
      el('h3', {}, parent, d.title + (d.caption ? ' (' + d.caption + ')' : ''));
      var scored = d.methods.filter(function (m) { return m.overall; });
      var t = el('table', { 'class': 'facts scores', 'data-title': d.title }, parent), hr = el('tr', {}, t);
      el('th', {}, hr, 'method');
      el('th', {}, hr, 'n');
      EVAL_COLS.forEach(function (c) { el('th', {}, hr, c[1] + (c[0] === 'MAE' ? ' ↓' : ' ↑')); });
      var best = EVAL_COLS.map(function (c) {
        var v = scored.map(function (m) { return m.overall[c[0]]; }).filter(fin);
        return c[0] === 'MAE' ? Math.min.apply(null, v) : Math.max.apply(null, v);
      });
      d.methods.forEach(function (m) {
        var tr = el('tr', {}, t);
        el('td', {}, tr, m.method);
        if (!m.overall) { el('td', { colspan: String(EVAL_COLS.length + 1) }, tr, 'not scored: ' + (m.not_scored || '')); return; }
        el('td', {}, tr, fmtInt(m.overall.n));
        EVAL_COLS.forEach(function (c, j) {
          var v = m.overall[c[0]], td = el('td', {}, tr, fin(v) ? v.toFixed(3) : '–');
          if (scored.length > 1 && v === best[j]) td.className = 'best-score';
        });
      });
      counts.tables++;
      var g = el('div', { 'class': 'grid' }, parent);
      function curveChart(title, xOf, key, opt) {
        var series = [];
        scored.forEach(function (m, i) {
          if (!m.curves) return;
          series.push({ name: m.method, x: xOf(m.curves), y: m.curves[key], color: PALETTE[i % PALETTE.length], dots: false });
        });
        opt.unit = true;
        chart(g, title, series, opt);
      }
      curveChart('precision–recall (' + d.title + ')', function (c) { return c.recall; }, 'precision',
                 { xlabel: 'recall', ylabel: 'precision', unitX: true });
      curveChart('Fβ (β²=0.3) against the threshold', function () { return thr; }, 'Fmeasure',
                 { xlabel: 'threshold', ylabel: 'Fβ' });
      curveChart('Eφ against the threshold', function () { return thr; }, 'Emeasure',
                 { xlabel: 'threshold', ylabel: 'Eφ', unitMax: 1 });
    });
  }
  function finish(what) {
    if (errors) return;
    status.setAttribute('data-state', 'ok');
    status.setAttribute('data-charts', String(counts.charts));
    status.setAttribute('data-heatmaps', String(counts.heatmaps));
    status.setAttribute('data-rows', String(counts.rows));
    status.setAttribute('data-tables', String(counts.tables));
    status.textContent = 'Drawn from the data in this file: ' + what + '. Nothing was fetched.';
  }

  // ---- the data -----------------------------------------------------------------------------
  var data = JSON.parse(document.getElementById('data').textContent);
  var app = document.getElementById('app');
  if (data.kind === 'eval') {
    el('h1', {}, app, 'camoxpert eval');
    el('div', { 'class': 'sub' }, app, 'generated ' + data.generated + ' by camoxpert ' + data.version);
    el('p', { 'class': 'keys' }, app, data.definitions);
    el('p', { 'class': 'keys' }, app, 'Curves: ' + data.curves_order + '. The best value of each column is bold.');
    evalSection(app, data);
    finish(counts.tables + ' score tables, ' + counts.charts + ' charts');
    return;
  }
  var runs = data.runs;
  var many = runs.length > 1;
  function runColor(i) { return PALETTE[i % PALETTE.length]; }
  function resumesOf(run, axis) {
    return run.segments.filter(function (s, i) { return i > 0 || s.start_step > 0; })
      .map(function (s) { return axis === 'step' ? s.start_step : s.start_epoch; });
  }
  function marksOf(run, axis) {
    return { stage2: run.stage2 ? (axis === 'step' ? run.stage2.step : run.stage2.epoch + 0.5) : null,
             resumes: resumesOf(run, axis) };
  }

  // ---- header, status, notes ----------------------------------------------------------------
  var STATUS_TEXT = { done: 'finished', stopped: 'stopped (Ctrl-C or --max-steps; resumable)', failed: 'failed',
                      'no-end': 'no end record: still going, or killed' };
  el('h1', {}, app, 'camoxpert report: ' + runs.map(function (r) { return r.name; }).join(' vs '));
  var sub = el('div', { 'class': 'sub' }, app, 'generated ' + data.generated +
    (data.live ? ' · this page reloads itself every 60 s while the run goes on' : ''));
  runs.forEach(function (r) {
    var f = r.facts;
    var b = el('span', { 'class': 'badge ' + f.status }, sub, (many ? r.name + ': ' : '') +
      (f.non_finite ? 'stopped by a non-finite loss' : STATUS_TEXT[f.status] || f.status));
    b.title = f.error || '';
  });
  runs.forEach(function (r) {
    var f = r.facts;
    if (f.status === 'failed' && f.error) el('div', { 'class': 'error' }, app, (many ? r.name + ': ' : '') + f.error);
    if (f.val_from_test)
      el('div', { 'class': 'error val-from-test' }, app, (many ? r.name + ': ' : '') + 'validation split drawn from ' +
        f.val_from_test + ' (--val-from-test): the best epoch was chosen on test images, so this model\'s scores on ' +
        'that test set are optimistic and not comparable with papers\'.');
    var notes = r.notes.slice();
    var p = r.predictions;
    if (p && p.skipped) p.skipped.forEach(function (s) { notes.push('prediction rows: ' + s); });
    if (!notes.length) return;
    var box = el('div', { 'class': 'notes' }, app);
    el('b', {}, box, (many ? r.name + ': ' : '') + 'what was skipped or inferred while reading the log');
    var ul = el('ul', {}, box);
    notes.forEach(function (n) { el('li', {}, ul, n); });
  });

  // ---- the run's facts ----------------------------------------------------------------------
  el('h2', {}, app, many ? 'The runs' : 'The run');
  var ft = el('table', { 'class': 'facts' }, app);
  function factRow(label, fn, code) {
    var tr = el('tr', {}, ft);
    el('th', {}, tr, label);
    runs.forEach(function (r) {
      var td = el('td', {}, tr);
      var v = fn(r);
      if (v === undefined || v === null || v === '') v = '–';
      if (code) el('code', {}, td, v); else td.textContent = v;
    });
  }
  if (many) factRow('run', function (r) { return r.name + ' (' + r.dir + ')'; });
  factRow('status', function (r) {
    var f = r.facts, s = f.non_finite ? 'stopped by a non-finite loss' : STATUS_TEXT[f.status] || f.status;
    if (f.end_time) s += ' at ' + f.end_time;
    if (f.status === 'no-end' && fin(f.log_mtime))
      s += '; the log was last written ' + fmtDur(data.generated_unix - f.log_mtime) + ' before this page';
    return s;
  });
  factRow('command', function (r) { return r.facts.command; }, true);
  factRow('model', function (r) {
    var c = r.facts.config;
    if (!c) return null;
    return c.model + ' on ' + c.backbone + (c.sparse ? ', ' + c.num_experts + ' experts per scale, top-' + c.top_k +
      ', balance ' + c.balance + ' (coefficient ' + c.lb_coef + ')' : ' (dense experts)') +
      (c.img_size ? ', ' + c.img_size + '×' + c.img_size + ' input' : '');
  });
  factRow('parameters', function (r) { return fin(r.facts.parameters) ? fmtInt(r.facts.parameters) + ' trainable' : null; });
  factRow('device, precision', function (r) {
    var f = r.facts;
    return f.device ? f.device + ', ' + f.precision + (f.threads ? ', ' + f.threads + ' threads' : '') : null;
  });
  factRow('data', function (r) {
    var f = r.facts;
    return f.dataset ? f.dataset + ': ' + f.train_images + ' training, ' + f.val_images + ' validation images (seed ' +
      f.seed + ')' + (f.val_from_test ? '; validation from ' + f.val_from_test + ' (--val-from-test)' : '') : null;
  });
  factRow('progress', function (r) {
    var f = r.facts;
    return 'epoch ' + f.epochs_done + (f.epochs ? ' of ' + f.epochs + ' (stage 1: ' + f.stage1_epochs + ')' : '') +
      ', step ' + fmtInt(f.steps_done);
  });
  factRow('started', function (r) { return r.facts.time ? r.facts.time + (r.facts.cwd ? ' in ' + r.facts.cwd : '') : null; });
  factRow('duration', function (r) {
    var f = r.facts;
    return (fin(f.wall_seconds) ? fmtDur(f.wall_seconds) + ' wall' : 'wall time unknown') + '; ' +
      fmtDur(f.train_seconds) + ' in training epochs';
  });
  factRow('starts and resumes', function (r) {
    return r.segments.map(function (s, i) {
      var t = (i === 0 && s.start_step === 0 ? 'started' : 'resumed at step ' + s.start_step + ' (epoch ' + s.start_epoch + ')') +
        (s.resumed_from ? ' from ' + s.resumed_from : '') + (s.time ? ', ' + s.time : '') +
        (s.inferred ? ' (inferred: no run record)' : '');
      var e = s.end ? s.end.status : (i < r.segments.length - 1 ? 'killed or crashed (no end record)' : null);
      return t + (e ? ' → ' + e : '');
    }).join('\n');
  }, true);
  factRow('best checkpoint', function (r) {
    var b = r.best;
    if (!b) return 'none yet (no validation)';
    return 'epoch ' + b.epoch + ' (step ' + b.step + ', ' + b.images + ' images): Sα ' + fmt(b.Smeasure) + ', Fβw ' +
      fmt(b.wFmeasure) + ', MAE ' + fmt(b.MAE) + ', mean Eφ ' + fmt(b.meanEm) + ', max Fβ ' + fmt(b.maxFm) +
      ', IoU ' + fmt(b.IoU) + (r.checkpoints.best ? '\n' + r.checkpoints.best : '');
  }, true);
  factRow('last checkpoint', function (r) { return r.checkpoints.last; }, true);
  factRow('log', function (r) { return r.facts.log + ' (' + fmtInt(r.steps.count) + ' steps' +
    (r.steps.every > 1 ? ', drawn as means of ' + r.steps.every + ' steps' : '') + ')'; }, true);

  // ---- curves -------------------------------------------------------------------------------
  el('h2', {}, app, 'Training curves');
  var keys = el('div', { 'class': 'keys' }, app);
  keys.innerHTML = '<b>- - -</b> purple dashed: stage 2 starts · <b>· · ·</b> orange dotted: a resume · ' +
    '<b>★</b> best validation epoch · hover a chart for values' +
    (many ? ' · colours: ' + runs.map(function (r, i) {
      return '<span style="color:' + runColor(i) + '">■</span> ' + r.name.replace(/</g, '&lt;');
    }).join(' ') : '');
  function stepChart(grid, title, pick, opt) {
    var series = runs.map(function (r, i) {
      return { name: r.name, x: r.steps.step, y: pick(r.steps), color: runColor(i) };
    });
    opt = opt || {};
    opt.xlabel = 'step';
    opt.integerX = true;
    opt.marks = runs.map(function (r) { return marksOf(r, 'step'); });
    opt.noLegend = true;
    return chart(grid, title, series, opt);
  }
  el('h3', {}, app, 'Per optimizer step');
  var sg = el('div', { 'class': 'grid' }, app);
  stepChart(sg, 'loss (total, weighted)', function (s) { return s.loss; });
  stepChart(sg, 'learning rate', function (s) { return s.lr; }, { zero: true });
  stepChart(sg, 'gradient norm (before clipping)', function (s) { return s.grad_norm; }, { zero: true });
  stepChart(sg, 'images / s', function (s) { return s.images_per_s; }, { zero: true });
  Object.keys(runs[0].steps.terms).forEach(function (k) {
    stepChart(sg, 'loss term: ' + k, function (s) { return s.terms[k]; });
  });

  el('h3', {}, app, 'Per epoch (validation on the held-out split)');
  var eg = el('div', { 'class': 'grid' }, app);
  function epochChart(title, variants, opt) {
    var series = [];
    runs.forEach(function (r, i) {
      variants.forEach(function (v, j) {
        series.push({ name: (many ? r.name + ' ' : '') + v[0], x: r.epochs.epoch, y: v[1](r.epochs),
                      color: many ? runColor(i) : PALETTE[j], dash: many && j ? (j === 1 ? '5 3' : '1 3') : '' });
      });
    });
    opt = opt || {};
    opt.xlabel = 'epoch';
    opt.integerX = true;
    opt.marks = runs.map(function (r) {
      var m = marksOf(r, 'epoch');
      if (opt.bestKey && r.best) m.best = { x: r.best.epoch, y: r.best[opt.bestKey], run: many ? r.name : '' };
      return m;
    });
    opt.noLegend = series.length < 2;
    return chart(eg, title, series, opt);
  }
  function val(k) { return function (e) { return e.val[k]; }; }
  epochChart('Sα (S-measure) ↑', [['Sα', val('Smeasure')]], { bestKey: 'Smeasure', unit: true });
  epochChart('Fβw (weighted F-measure) ↑', [['Fβw', val('wFmeasure')]], { bestKey: 'wFmeasure', unit: true });
  epochChart('MAE ↓', [['MAE', val('MAE')]], { bestKey: 'MAE', zero: true });
  epochChart('Eφ (E-measure) ↑', [['mean', val('meanEm')], ['max', val('maxEm')], ['adaptive', val('adpEm')]],
             { bestKey: 'meanEm', unit: true });
  epochChart('Fβ (F-measure) ↑', [['mean', val('meanFm')], ['max', val('maxFm')], ['adaptive', val('adpFm')]],
             { bestKey: 'maxFm', unit: true });
  epochChart('IoU at 0.5 ↑', [['IoU', val('IoU')]], { bestKey: 'IoU', unit: true });
  epochChart('training loss (epoch mean)', [['loss', function (e) { return e.loss; }]], {});
  epochChart('epoch time (s, training only)', [['seconds', function (e) { return e.seconds; }]], { zero: true });

  // ---- test sets (RUN/eval.json) and the spread over runs -------------------------------------
  runs.forEach(function (r) {
    if (!r.test_eval) return;
    el('h2', {}, app, (many ? r.name + ': ' : '') + 'Test sets (camoxpert eval, ' + r.dir + '/eval.json)');
    el('p', { 'class': 'keys' }, app, r.test_eval.definitions || '');
    evalSection(app, r.test_eval);
  });
  // mean ± std (n - 1) over the runs, e.g. of one configuration trained with several seeds
  function meanStd(v) {
    v = v.filter(fin);
    if (!v.length) return '–';
    var mu = v.reduce(function (a, b) { return a + b; }, 0) / v.length;
    if (v.length < 2) return mu.toFixed(4) + ' (1 run)';
    var sd = Math.sqrt(v.reduce(function (a, b) { return a + (b - mu) * (b - mu); }, 0) / (v.length - 1));
    return mu.toFixed(4) + ' ± ' + sd.toFixed(4);
  }
  if (many) {
    el('h2', {}, app, 'Across the ' + runs.length + ' runs: mean ± std');
    el('p', { 'class': 'keys' }, app, 'Seeds ' + runs.map(function (r) { return r.facts.seed; }).join(', ') +
      '. Validation: each run\'s best checkpoint; std with n − 1. Test sets: the first method of each run\'s eval.json.');
    var ms = el('table', { 'class': 'facts scores spread' }, app), hr = el('tr', {}, ms);
    el('th', {}, hr, 'scores');
    EVAL_COLS.forEach(function (c) { el('th', {}, hr, c[1]); });
    var tr = el('tr', {}, ms);
    el('td', {}, tr, 'validation (best epoch)');
    EVAL_COLS.forEach(function (c) {
      el('td', {}, tr, meanStd(runs.map(function (r) { return r.best ? r.best[c[0]] : NaN; })));
    });
    var titles = [];
    runs.forEach(function (r) {
      if (r.test_eval) evalDatasets(r.test_eval).forEach(function (d) { if (titles.indexOf(d.title) < 0) titles.push(d.title); });
    });
    titles.forEach(function (ti) {
      var row = el('tr', {}, ms);
      el('td', {}, row, ti);
      EVAL_COLS.forEach(function (c) {
        el('td', {}, row, meanStd(runs.map(function (r) {
          var d = r.test_eval ? evalDatasets(r.test_eval).filter(function (x) { return x.title === ti; })[0] : null;
          var m = d && d.methods[0];
          return m && m.overall ? m.overall[c[0]] : NaN;
        })));
      });
    });
    counts.tables++;
  }

  // ---- routing ------------------------------------------------------------------------------
  var routed = runs.filter(function (r) { return r.routing; });
  if (routed.length) el('h2', {}, app, 'Routing (sparse mixture of experts)');
  else el('p', { 'class': 'sub' }, app, 'No routing statistics: ' + (many ? 'the runs train' : 'the run trains') +
    ' dense models, or no epoch has finished yet.');
  function heatmap(parent, title, matrix, S, E, note) {
    var card = el('div', { 'class': 'card' }, parent);
    el('div', { 'class': 'title' }, card, title);
    if (note) el('div', { 'class': 'hint' }, card, note);
    var t = el('table', { 'class': 'heatmap', 'data-title': title }, card);
    var hr = el('tr', {}, t);
    el('th', {}, hr, 'scale');
    for (var e = 0; e < E; e++) el('th', {}, hr, expertName(e));
    for (var s = 0; s < S; s++) {
      var tr = el('tr', {}, t);
      el('th', {}, tr, String(s));
      for (var x = 0; x < E; x++) {
        var v = matrix && matrix[s] ? matrix[s][x] : null;
        var td = el('td', {}, tr, fin(v) ? Math.round(v * 100) + '%' : '–');
        if (fin(v)) {
          td.style.background = 'rgba(31,119,180,' + Math.max(0.04, Math.min(1, v)).toFixed(3) + ')';
          td.style.color = v > 0.55 ? '#fff' : '#1d232a';
        }
        td.title = 'scale ' + s + ', expert ' + expertName(x) + ': ' + (fin(v) ? (v * 100).toFixed(1) + '% of the images' : 'no value');
      }
    }
    counts.heatmaps++;
    return card;
  }
  routed.forEach(function (r) {
    var R = r.routing, S = R.scales, E = R.E;
    if (many) el('h3', {}, app, r.name);
    el('div', { 'class': 'keys' }, app, 'Experts cycle through texture (T), frequency (F), edge (Ed) and contrast (C); ' +
      'scale 0 is the finest backbone stage (stride 4), scale 3 the coarsest (stride 32). Share: the fraction of ' +
      'training images that chose the expert among their top-' + (r.facts.config ? r.facts.config.top_k : 'k') +
      ', so the shares of a scale add up to k.');
    var g = el('div', { 'class': 'grid' }, app);
    function perExpert(title, arr, opt) {
      for (var s = 0; s < S; s++) {
        var series = [];
        for (var e = 0; e < E; e++) series.push({ name: expertName(e), x: R.epoch, y: arr[s][e], color: PALETTE[e % 10] });
        var o = { xlabel: 'epoch', integerX: true, marks: [marksOf(r, 'epoch')], unit: opt.unit };
        chart(g, title + ', scale ' + s, series, o);
      }
    }
    perExpert('share of images per expert', R.share, { unit: true });
    perExpert('mean weight when chosen', R.mean_weight, { unit: true });
    var bs = [];
    for (var s = 0; s < S; s++) bs.push({ name: 'scale ' + s, x: R.epoch, y: R.balance[s], color: PALETTE[s] });
    chart(g, 'balancing loss per scale (coefficient included)', bs, { xlabel: 'epoch', integerX: true, zero: true,
          marks: [marksOf(r, 'epoch')] });

    // Heat maps: scale × expert share per image category, at a chosen epoch.
    el('h3', {}, app, (many ? r.name + ': ' : '') + 'which experts each image category uses');
    var ctl = el('label', { 'class': 'slider' }, app, 'epoch ');
    var last = R.epoch.length - 1;
    var range = el('input', { type: 'range', min: '0', max: String(last), value: String(last) }, ctl);
    var lab = el('b', {}, ctl, String(R.epoch[last]));
    var hc = el('div', { 'class': 'heatcards' }, app);
    function drawHeat(k) {
      hc.textContent = '';
      lab.textContent = String(R.epoch[k]);
      var all = [];
      for (var s = 0; s < S; s++) { all.push([]); for (var e = 0; e < E; e++) all[s].push(R.share[s][e][k]); }
      heatmap(hc, 'all training images', all, S, E, 'epoch ' + R.epoch[k]);
      R.categories.forEach(function (c) {
        if (!c.share[k]) return;
        heatmap(hc, c.name + ' (' + c.images[k] + ' images)', c.share[k], S, E, null);
      });
    }
    range.addEventListener('input', function () { drawHeat(+range.value); });
    drawHeat(last);
  });

  // ---- predictions --------------------------------------------------------------------------
  el('h2', {}, app, 'Predictions');
  function img(td, url, w, h, alt) {
    if (!url) { el('span', { 'class': 'none' }, td, alt); return; }
    var i = el('img', { src: url, width: String(w), height: String(h), alt: alt }, td);
    i.title = alt;
  }
  function routeCell(td, routing, E) {
    if (!routing) { el('span', { 'class': 'none' }, td, 'dense'); return; }
    var t = el('table', { 'class': 'route' }, td), hr = el('tr', {}, t);
    el('th', {}, hr, '');
    for (var e = 0; e < E; e++) el('th', {}, hr, expertName(e));
    routing.forEach(function (sc, s) {
      var tr = el('tr', {}, t);
      el('th', {}, tr, 's' + s);
      for (var e = 0; e < E; e++) {
        var j = sc.experts.indexOf(e), td2 = el('td', {}, tr, j >= 0 ? String(Math.round(sc.weights[j] * 100)) : '');
        if (j >= 0) {
          td2.style.background = 'rgba(214,39,40,' + Math.max(0.15, sc.weights[j]).toFixed(2) + ')';
          td2.title = 'scale ' + s + ': expert ' + expertName(e) + ', weight ' + sc.weights[j];
        }
      }
    });
  }
  function predTable(parent, p, idx, E) {
    var t = el('table', { 'class': 'preds' }, parent), hr = el('tr', {}, t);
    ['image', 'photo', 'ground truth', 'mask', 'overlay', 'routing (weight %)'].forEach(function (h) { el('th', {}, hr, h); });
    idx.forEach(function (i) {
      var it = p.items[i], tr = el('tr', { 'class': 'pred-row' }, t);
      var m = el('td', { 'class': 'meta' }, tr);
      el('div', {}, m, it.name);
      if (it.category) el('div', { 'class': 'sub' }, m, it.category);
      el('div', {}, m, fin(it.sm) ? 'Sα ' + it.sm.toFixed(3) + ' · MAE ' + it.mae.toFixed(3) : 'no ground truth: not scored');
      img(el('td', {}, tr), it.photo, it.w, it.h, 'no photo');
      img(el('td', {}, tr), it.gt, it.w, it.h, 'no ground truth');
      img(el('td', {}, tr), it.mask, it.w, it.h, 'no mask');
      img(el('td', {}, tr), it.overlay, it.w, it.h, 'no overlay');
      routeCell(el('td', {}, tr), it.routing, E);
      counts.rows++;
    });
  }
  runs.forEach(function (r) {
    var p = r.predictions;
    if (many) el('h3', {}, app, r.name);
    if (!p) { el('p', { 'class': 'sub' }, app, 'No prediction rows (--max-images 0).'); return; }
    if (p.error) { el('div', { 'class': 'error' }, app, 'No prediction rows: ' + p.error); return; }
    var E = r.facts.config && r.facts.config.sparse ? r.facts.config.num_experts : 0;
    p.items.forEach(function (it) { if (it.routing) it.routing.forEach(function (s) { s.experts.forEach(function (e) { E = Math.max(E, e + 1); }); }); });
    el('p', { 'class': 'sub' }, app, p.items.length + ' images from ' + p.source +
      (p.weights ? '; masks predicted on the CPU with ' + p.weights : '') +
      '. Mask: the 8-bit map predict writes; overlay: mask > 128 in red.');
    if (p.worst.length) {
      el('h3', {}, app, 'Worst ' + p.worst.length + ' by Sα');
      predTable(app, p, p.worst, E);
      el('h3', {}, app, 'Best ' + p.best.length + ' by Sα');
      predTable(app, p, p.best, E);
    }
    el('h3', {}, app, 'All ' + p.items.length + ' sampled images, by name');
    predTable(app, p, p.items.map(function (_, i) { return i; }), E);
  });

  finish(counts.charts + ' charts, ' + counts.heatmaps + ' heat maps, ' + counts.rows + ' prediction rows');
})();
