// The dmabuf report's renderer: reads the JSON in #data and draws each section.
// Plain DOM and SVG, no library, nothing fetched.
(function () {
  'use strict';
  var SVG = 'http://www.w3.org/2000/svg';
  var LANE_H = 26, PAD = 14, AXIS_H = 22, PLACE_H = 18, ROW_GAP = 8, LABEL_W = 190, MAX_ROWS = 24;

  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === 'text') e.textContent = attrs[k];
      else if (k === 'cls') e.className = attrs[k];
      else if (k === 'on') for (var ev in attrs.on) e.addEventListener(ev, attrs.on[ev]);
      else e.setAttribute(k, attrs[k]);
    }
    (kids || []).forEach(function (c) { if (c) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }
  function sv(tag, attrs, parent) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs || {}) {
      if (k === 'text') e.textContent = attrs[k]; else if (k === 'cls') e.setAttribute('class', attrs[k]); else e.setAttribute(k, attrs[k]);
    }
    if (parent) parent.appendChild(e);
    return e;
  }
  function tip(e, t) { sv('title', { text: t }, e); return e; }
  function hex(n) { return '0x' + Number(n).toString(16); }
  function span(r) { return '[' + hex(r[0]) + '..' + hex(r[1]) + ')'; }

  function defs(svg) {
    var d = sv('defs', {}, svg);
    var p = sv('pattern', { id: 'stale-hatch', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' }, d);
    sv('rect', { width: 6, height: 6, fill: '#c0392b', 'fill-opacity': 0.18 }, p);
    sv('line', { x1: 0, y1: 0, x2: 0, y2: 6, stroke: '#c0392b', 'stroke-width': 2.2 }, p);
    var f = sv('pattern', { id: 'fold-hatch', width: 8, height: 8, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(-45)' }, d);
    sv('rect', { width: 8, height: 8, fill: '#eef0f3' }, f);
    sv('line', { x1: 0, y1: 0, x2: 0, y2: 8, stroke: '#c9ced6', 'stroke-width': 3 }, f);
    var m = sv('marker', { id: 'arrowhead', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, d);
    sv('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#2d7d46' }, m);
  }

  // ---- a check or explore section ----------------------------------------------------
  function runSection(s, si) {
    var sec = el('section', { cls: 'report-section', 'data-kind': s.kind, id: 'section-' + si });
    var lines = s.source.split('\n');
    var st = { run: 0, finding: s.findings.length ? 0 : -1, zoom: 0, hidden: {}, buffer: '' };
    if (st.finding >= 0) st.run = s.findings[0].run || 0;

    sec.appendChild(el('h2', { text: s.file }));
    var meta = el('div', { cls: 'meta' });
    if (s.kind === 'explore') {
      meta.appendChild(el('span', { cls: 'verdict ' + s.verdict, text: s.verdict }));
      meta.appendChild(document.createTextNode(' on ' + s.platform + ' (' + s.implementation + ' maintenance): ' +
        s.states + ' states, ' + s.paths + ' paths, depth ' + s.max_depth + ', ' + s.seconds.toFixed(3) + ' s' +
        (s.bound ? '; ' + s.bound : '')));
    } else {
      var bad = s.findings.some(function (f) { return f.severity === 'definite'; });
      var label = s.findings.length ? s.findings.length + ' finding' + (s.findings.length > 1 ? 's' : '') : 'no findings';
      meta.appendChild(el('span', { cls: 'verdict ' + (s.findings.length ? 'bad' : 'ok'), text: label }));
      meta.appendChild(document.createTextNode(' on ' + s.platform + ', ' + s.steps + ' steps, chooser ' + s.chooser +
        ', maintenance: ' + s.implementation + (s.findings.length && !bad ? ' (all latent)' : '')));
    }
    sec.appendChild(meta);
    if (s.kind === 'explore' && s.moves.length) {
      sec.appendChild(el('h3', { text: 'The hardware\'s moves on the path' }));
      var ul = el('ul', { cls: 'moves' });
      s.moves.forEach(function (m) { ul.appendChild(el('li', {}, [el('code', { text: 'line ' + m.line }), ' ' + m.what])); });
      sec.appendChild(ul);
      if (s.replay) sec.appendChild(el('div', { cls: 'meta' }, ['replay: ', el('code', { text: 'dmabuf check --replay ' + s.replay })]));
    }

    var list = el('ul', { cls: 'findings' });
    if (s.findings.length) {
      sec.appendChild(el('h3', { text: 'Findings' }));
      s.findings.forEach(function (f, i) {
        var li = el('li', { cls: 'finding ' + f.severity, 'data-index': i, on: { click: function () { select(i); } } }, [
          el('span', { cls: 'kind', text: f.kind }), el('span', { cls: 'sev', text: f.severity + (f.count > 1 ? ', x' + f.count : '') }),
          ' line ' + f.line + ': ' + f.message]);
        if (f.hint) li.appendChild(el('div', { cls: 'hint', text: 'hint: ' + f.hint }));
        (f.consequences || []).forEach(function (c) {
          li.appendChild(el('div', { cls: 'cons', text: 'which leads to ' + c.kind + ' at line ' + c.line + ': ' + c.message }));
        });
        list.appendChild(li);
      });
      sec.appendChild(list);
    } else if (s.kind === 'check') {
      sec.appendChild(el('p', { cls: 'ok', text: 'No stale read, lost write, race or misuse on this run.' }));
    }

    sec.appendChild(el('h3', { text: 'Timeline' }));
    var controls = el('div', { cls: 'controls' });
    sec.appendChild(controls);
    var legend = el('div', { cls: 'legend' });
    [['var(--cpu)', 'CPU step'], ['var(--dev)', 'device job'], ['var(--fw)', 'framework maintenance / copy'],
      ['var(--bounce)', 'bounce copy'], ['var(--hw)', 'hardware\'s own move'], ['#2d7d46', 'fence: signal to wait'],
      ['var(--clean)', 'clean line'], ['var(--dirty)', 'dirty line'], ['var(--held)', 'memory'], ['var(--absent)', 'absent']]
      .forEach(function (x) { legend.appendChild(el('span', {}, [el('i', { style: 'background:' + x[0] }), x[1]])); });
    legend.appendChild(el('span', {}, [el('i', { style: 'background: repeating-linear-gradient(45deg,#c0392b55 0 2px,#fff0 2px 5px)' }), 'stale: older than the newest write']));
    sec.appendChild(legend);
    var viz = el('div', { cls: 'viz' });
    var labels = el('div', { cls: 'labels' });
    var scroll = el('div', { cls: 'scroll' });
    viz.appendChild(labels); viz.appendChild(scroll);
    sec.appendChild(viz);
    var notes = el('div', { cls: 'notes' });
    sec.appendChild(notes);
    sec.appendChild(el('h3', { text: 'Scenario' }));
    var source = el('div', { cls: 'source' });
    sec.appendChild(source);

    function rec() { return s.runs[st.run].recording; }
    function finding() { return st.finding >= 0 ? s.findings[st.finding] : null; }
    function select(i) {
      st.finding = st.finding === i ? -1 : i;
      if (st.finding >= 0 && s.findings[i].run !== undefined && s.findings[i].run !== st.run) { st.run = s.findings[i].run; st.zoom = 0; buildControls(); }
      Array.prototype.forEach.call(list.children, function (li, j) { li.classList.toggle('selected', j === st.finding); });
      draw();
    }

    function buildControls() {
      controls.textContent = '';
      if (s.runs.length > 1) {
        var sel = el('select', { on: { change: function (e) { st.run = +e.target.value; st.zoom = 0; buildControls(); draw(); } } });
        s.runs.forEach(function (r, i) { var o = el('option', { value: i, text: 'run under ' + r.name }); if (i === st.run) o.selected = true; sel.appendChild(o); });
        controls.appendChild(el('label', {}, ['run: ', sel]));
      } else {
        controls.appendChild(el('span', { text: 'run: ' + s.runs[0].name }));
      }
      controls.appendChild(el('span', {}, [
        el('button', { text: '−', title: 'zoom out', on: { click: function () { st.zoom = Math.max(1, st.zoom / 1.5); draw(); } } }), ' ',
        el('button', { text: '+', title: 'zoom in', on: { click: function () { st.zoom = Math.min(80, st.zoom * 1.5); draw(); } } }), ' ',
        el('button', { text: 'fit', on: { click: function () { st.zoom = 0; draw(); } } })]));
      var lanes = el('span', {}, ['lanes: ']);
      rec().lanes.forEach(function (l, i) {
        if (l.kind === 'fold') return;
        var cb = el('input', { type: 'checkbox', 'data-lane': l.name });
        cb.checked = !st.hidden[l.name];
        cb.addEventListener('change', function () { st.hidden[l.name] = !cb.checked; draw(); });
        lanes.appendChild(el('label', {}, [cb, ' ' + l.name + ' ']));
      });
      controls.appendChild(lanes);
      var bufs = {};
      rec().moments.forEach(function (m) { m.buffers.forEach(function (b) { bufs[b] = 1; }); });
      var bsel = el('select', { on: { change: function (e) { st.buffer = e.target.value; draw(); } } });
      bsel.appendChild(el('option', { value: '', text: 'every buffer' }));
      Object.keys(bufs).sort().forEach(function (b) { var o = el('option', { value: b, text: b }); if (b === st.buffer) o.selected = true; bsel.appendChild(o); });
      controls.appendChild(el('label', {}, ['buffer: ', bsel]));
    }

    function draw() {
      var r = rec(), f = finding(), n = Math.max(r.moments.length, 1);
      var avail = Math.max(300, (sec.clientWidth || 1000) - LABEL_W - 40);
      var z = st.zoom || Math.max(3, Math.min(36, (avail - 2 * PAD) / n));
      var width = Math.max(avail, Math.ceil(2 * PAD + n * z));
      function x(m) { return PAD + m * z + z / 2; }
      var lanes = [], laneY = {};
      r.lanes.forEach(function (l, i) { if (l.kind !== 'fold' && !st.hidden[l.name]) { laneY[i] = AXIS_H + lanes.length * LANE_H + LANE_H / 2; lanes.push(i); } });
      var lanesH = AXIS_H + lanes.length * LANE_H;
      var fLines = {}, fBuf = f ? f.buffer : '';
      if (f) f.steps.forEach(function (x) { fLines[x.line] = x.role; });

      // The rows of line states: those of the finding's buffer and bytes, or all.
      var rows = r.rows.filter(function (row) {
        var rg = r.ranges[row.range];
        if (st.buffer && rg.buffer !== st.buffer) return false;
        if (!f) return true;
        if (rg.buffer !== f.buffer) return false;
        var a = f.range[0], b = f.range[1];
        if (a >= b) return true;
        return row.spans.some(function (sp) { return sp[0] < b && sp[1] > a; });
      });
      var more = rows.length - MAX_ROWS;
      rows = rows.slice(0, MAX_ROWS);
      var ghostList = f ? (f.ghosts || []) : [];
      var ghostY = lanesH + 4, GHOST_H = 18;
      var rowsLayout = [], y = lanesH + 8 + ghostList.length * GHOST_H + 18;
      rows.forEach(function (row) {
        var places = [];
        row.places.forEach(function (ch, p) {
          var used = ch.some(function (c) { return c[1].state !== 'absent'; });
          if (used || p === 0) places.push(p);
        });
        rowsLayout.push({ row: row, y: y, places: places });
        y += 16 + places.length * PLACE_H + ROW_GAP;
      });
      var height = y + 6;

      var svg = sv('svg', { width: width, height: height, cls: 'timeline' });
      defs(svg);
      var lsvg = sv('svg', { width: LABEL_W, height: height, cls: 'lane-labels' });
      lanes.forEach(function (li, k) {
        sv('rect', { x: 0, y: AXIS_H + k * LANE_H, width: width, height: LANE_H, cls: 'lane-bg' + (k % 2 ? ' alt' : '') }, svg);
        sv('text', { x: 10, y: laneY[li] + 4, text: r.lanes[li].name, cls: 'lane-label' }, lsvg);
      });
      sv('text', { x: 10, y: 15, text: 'scenario line', cls: 'axis' }, lsvg);

      // The axis: the scenario line of each CPU step, where there is room.
      var axis = sv('g', { cls: 'axis' }, svg);
      var lastX = -1e9, lastW = 0;
      r.moments.forEach(function (m, i) {
        if (r.lanes[m.lane].kind !== 'cpu') return;
        var label = String(m.line) + (m.it ? '·' + m.it : '');
        // About 7 px a character: a label is drawn where it does not touch the last one.
        var w = label.length * 7;
        if (x(i) - lastX < (w + lastW) / 2 + 4) return;
        lastX = x(i); lastW = w;
        sv('text', { x: x(i), y: 15, 'text-anchor': 'middle', text: label }, axis);
      });

      // Folded iterations: a band across the lanes.
      r.moments.forEach(function (m, i) {
        if (r.lanes[m.lane].kind !== 'fold') return;
        var b = sv('rect', { x: x(i) - z / 2, y: AXIS_H, width: Math.max(z, 4), height: lanes.length * LANE_H, cls: 'fold' }, svg);
        tip(b, m.label + ' (' + m.n + ' steps)');
      });

      // Jobs: queued from the submission, then running.
      r.jobs.forEach(function (j) {
        if (!(j.lane in laneY)) return;
        var yy = laneY[j.lane];
        if (j.start > j.submit) sv('line', { x1: x(j.submit), x2: x(j.start), y1: yy, y2: yy, cls: 'job-queued' }, svg);
        var w = Math.max(x(j.end) - x(j.start) + Math.min(z * 0.8, 16), 4);
        var bar = sv('rect', { x: x(j.start) - Math.min(z * 0.4, 8), y: yy - 9, width: w, height: 18, rx: 3, cls: 'job-run' }, svg);
        tip(bar, r.lanes[j.lane].name + ' job from line ' + j.line + (j.fence ? ', signals ' + j.fence : '') + ': ' + (lines[j.line - 1] || '').trim());
      });

      // The moments.
      r.moments.forEach(function (m, i) {
        var lane = r.lanes[m.lane];
        if (lane.kind === 'fold' || !(m.lane in laneY)) return;
        var yy = laneY[m.lane], xx = x(i), w = Math.max(3, Math.min(z * 0.7, 14));
        var dim = st.buffer && m.buffers.length && m.buffers.indexOf(st.buffer) < 0;
        var hl = f && (lane.kind === 'cpu' || lane.kind === 'device') && (m.line in fLines) && (!fBuf || !m.buffers.length || m.buffers.indexOf(fBuf) >= 0);
        var cls = { cpu: 'm-step', device: 'm-job', framework: 'm-fw', bounce: 'm-bounce', hardware: 'm-hw' }[lane.kind];
        var e;
        if (lane.kind === 'hardware') {
          e = sv('path', { d: 'M' + xx + ',' + (yy - 7) + ' l6,7 l-6,7 l-6,-7 z', cls: cls }, svg);
        } else {
          e = sv('rect', { x: xx - w / 2, y: yy - 7, width: w, height: 14, rx: 2, cls: cls }, svg);
        }
        e.setAttribute('class', cls + ' moment' + (dim ? ' dim' : '') + (hl ? (f.line === m.line ? ' hl-main' : ' hl') : ''));
        e.setAttribute('data-moment', i);
        var where = 'line ' + m.line + (m.it ? ' (iteration ' + m.it + ')' : '');
        var what = m.label || (lines[m.line - 1] || '').trim();
        tip(e, lane.name + ', ' + where + ': ' + what + (hl ? '\n' + fLines[m.line] : ''));
        if (m.label && z >= 60) sv('text', { x: xx + 8, y: yy - 9, text: m.label }, svg);
      });

      // Fences: from the signal to the wait.
      r.arrows.forEach(function (a) {
        var fm = r.moments[a.from], tm = r.moments[a.to];
        if (!fm || !tm || !(fm.lane in laneY) || !(tm.lane in laneY)) return;
        var x1 = x(a.from), y1 = laneY[fm.lane], x2 = x(a.to), y2 = laneY[tm.lane];
        var bend = Math.max(18, Math.abs(x2 - x1) / 3);
        var p = sv('path', { d: 'M' + x1 + ',' + y1 + ' C' + (x1 + bend) + ',' + y1 + ' ' + (x2 - bend) + ',' + y2 + ' ' + x2 + ',' + (y2 + (y2 > y1 ? -7 : 7)),
          cls: 'arrow' + (a.implicit ? ' implicit' : ''), 'marker-end': 'url(#arrowhead)' }, svg);
        tip(p, 'fence ' + a.fence + (a.implicit ? ' (the framework waits on the reservation object)' : ''));
      });

      // The missing steps, where the hint puts them.
      if (f) (f.ghosts || []).forEach(function (g, k) {
        var at = -1;
        for (var i = 0; i < r.moments.length; i++) {
          var m = r.moments[i];
          if (r.lanes[m.lane].kind === 'cpu' && m.line === g.line) { at = i; break; }
        }
        if (at < 0) return;
        if (g.after) { while (at + 1 < r.moments.length && r.lanes[r.moments[at + 1].lane].kind !== 'cpu') at++; }
        var gx = g.after ? x(at) + z / 2 : x(at) - z / 2;
        sv('line', { x1: gx, x2: gx, y1: AXIS_H - 4, y2: height - 4, cls: 'ghost-line' }, svg);
        var label = 'missing: ' + g.code;
        var ty = ghostY + k * GHOST_H, tw = label.length * 6.2 + 10;
        var tx = Math.min(gx + 4, width - tw - 2);
        sv('rect', { x: tx, y: ty, width: tw, height: 15, rx: 3, cls: 'ghost-box ghost' }, svg);
        tip(sv('text', { x: tx + 5, y: ty + 11, text: label }, svg), f.hint);
      });

      // Line states.
      if (rowsLayout.length) sv('text', { x: 10, y: rowsLayout[0].y - 6, text: 'line states', cls: 'axis' }, lsvg);
      ghostList.forEach(function (g, k) { sv('text', { x: 10, y: ghostY + k * GHOST_H + 12, text: 'missing step', cls: 'axis' }, lsvg); });
      rowsLayout.forEach(function (L) {
        var row = L.row, rg = r.ranges[row.range];
        var spans = row.spans.slice(0, 2).map(span).join(' ') + (row.spans.length > 2 ? ' +' + (row.spans.length - 2) : '');
        var title = rg.buffer + spans + ' ' + row.lines + ' line' + (row.lines > 1 ? 's' : '');
        tip(sv('text', { x: 6, y: L.y + 11, text: title.length > 30 ? title.slice(0, 29) + '…' : title, cls: 'row-title' }, lsvg),
          title + (rg.incarnation > 1 ? ' (buffer #' + rg.incarnation + ' of that name)' : '') + ', physical ' + hex(row.phys));
        sv('line', { x1: 0, x2: width, y1: L.y + 14, y2: L.y + 14, stroke: '#e4e7eb' }, svg);
        L.places.forEach(function (p, k) {
          var py = L.y + 16 + k * PLACE_H;
          sv('text', { x: 16, y: py + 12, text: r.places[p] }, lsvg);
          var ch = row.places[p];
          for (var c = 0; c < ch.length; c++) {
            var from = ch[c][0], v = ch[c][1], to = c + 1 < ch.length ? ch[c + 1][0] : n;
            var x0 = x(from) - z / 2, x1 = Math.max(x(to) - z / 2, x0 + 2);
            var stt = v.state;
            var seg = sv('rect', { x: x0, y: py + 2, width: x1 - x0, height: PLACE_H - 4, cls: 'st-' + stt + ' seg' }, svg);
            var names = v.writes.map(wname).join(' + ');
            tip(seg, r.places[p] + ': ' + (stt === 'held' ? 'holds' : stt) + (names ? ' ' + names : '') + (v.stale ? ' — STALE: older than the newest write' : '') +
              ' (from moment ' + from + ', line ' + ((r.moments[from] || {}).line || '?') + ')');
            if (v.stale) { seg.setAttribute('data-stale', '1'); sv('rect', { x: x0, y: py + 2, width: x1 - x0, height: PLACE_H - 4, cls: 'stale' }, svg); }
            if (names && x1 - x0 > names.length * 5.6 + 6) sv('text', { x: x0 + 3, y: py + 12, text: names, cls: 'seg-label' }, svg);
          }
        });
      });
      if (more > 0) sv('text', { x: 10, y: height - 2, text: more + ' more rows', cls: 'axis' }, lsvg);

      function wname(w) {
        if (w === 0) return 'initial';
        var i = r.writes[w];
        return i ? i.agent + '@' + i.line + (i.it ? '·' + i.it : '') : 'w' + w;
      }
      var left = scroll.scrollLeft;
      labels.textContent = ''; scroll.textContent = '';
      labels.appendChild(lsvg); scroll.appendChild(svg);
      scroll.scrollLeft = left;
      notes.textContent = r.notes.join('; ');
      if (!rows.length && r.rows.length === 0) notes.textContent = (notes.textContent ? notes.textContent + '; ' : '') + 'no line of a buffer to follow';
      drawSource(f);
    }

    function drawSource(f) {
      source.textContent = '';
      var ghosts = f ? f.ghosts || [] : [];
      var roles = {};
      if (f) f.steps.forEach(function (x) { roles[x.line] = (roles[x.line] ? roles[x.line] + '; ' : '') + x.role; });
      lines.forEach(function (text, i) {
        var no = i + 1;
        ghosts.forEach(function (g) { if (!g.after && g.line === no) source.appendChild(ghostLine(g, text)); });
        var cls = 'src-line';
        if (/^\s*#/.test(text)) cls += ' comment';
        if (f && no === f.line) cls += ' hl-main'; else if (roles[no]) cls += ' hl';
        var d = el('div', { cls: cls, 'data-line': no }, [el('span', { cls: 'no', text: String(no) }), el('span', { cls: 'code', text: text })]);
        if (roles[no]) d.appendChild(el('span', { cls: 'role', text: '← ' + roles[no] }));
        source.appendChild(d);
        ghosts.forEach(function (g) { if (g.after && g.line === no) source.appendChild(ghostLine(g, text)); });
      });
      function ghostLine(g, near) {
        var indent = (near.match(/^\s*/) || [''])[0];
        return el('div', { cls: 'src-line ghost' }, [el('span', { cls: 'no', text: '+' }), el('span', { cls: 'code', text: indent + g.code }),
          el('span', { cls: 'role', text: 'missing (hint)' })]);
      }
    }

    buildControls();
    if (st.finding >= 0) list.children[st.finding].classList.add('selected');
    // Drawn once in the page, so that the fit zoom knows the width.
    sec.draw = draw;
    window.addEventListener('resize', function () { if (!st.zoom) draw(); });
    return sec;
  }

  // ---- the benchmark -----------------------------------------------------------------
  function benchSection(s) {
    var sec = el('section', { cls: 'report-section', 'data-kind': 'bench' });
    sec.appendChild(el('h2', { text: 'Maintenance benchmark: ' + s.suite.frames + ' frames of ' + s.suite.width + 'x' + s.suite.height }));
    var t = el('ul', { cls: 'targets' });
    s.targets.forEach(function (x) {
      t.appendChild(el('li', { cls: x.met ? 'met' : 'missed', text: x.target + (x.met ? '' : ': missed by ' + x.missed.join(', ')) }));
    });
    sec.appendChild(el('h3', { text: 'Targets' }));
    sec.appendChild(t);
    var charts = el('div', { cls: 'charts' });
    // The charts are SVG made by the report's own code from numbers, with text escaped.
    charts.innerHTML = s.bytes_chart + s.ratio_chart;
    sec.appendChild(charts);
    var table = el('div', {});
    table.innerHTML = s.table;
    sec.appendChild(table);
    return sec;
  }

  var data = JSON.parse(document.getElementById('data').textContent);
  var root = document.getElementById('report');
  root.textContent = '';
  data.sections.forEach(function (s, i) {
    var sec = s.kind === 'bench' ? benchSection(s) : runSection(s, i);
    root.appendChild(sec);
    if (sec.draw) sec.draw();
  });
  // For the browser test: drawn, and how long it took since the page began to load.
  document.body.setAttribute('data-render-ms', String(Math.round(performance.now())));
  document.body.setAttribute('data-ready', '1');
})();
