// The live sequence diagram: polls the transaction's JSON, redraws the server-rendered SVG when it
// changes, shows an arrow's decoded (redacted) message in an overlay, unfolds the folded login
// hops on click, and keeps the step strip (done, current, failed, not reached) up to date. With
// data-follow (the trainer dashboard) it also polls the list of signings and switches to each new
// one as it arrives. No CDN; everything it shows was computed by the server.
(function () {
  'use strict';
  var FINAL = { completed: true, refused: true, abandoned: true };

  function text(tag, value, cls) {
    var node = document.createElement(tag);
    node.textContent = value;
    if (cls) { node.className = cls; }
    return node;
  }

  function init(box) {
    var diagram = box.querySelector('.sl-diagram');
    var panel = box.querySelector('.sl-panel');
    var panelText = panel.querySelector('pre');
    var status = box.querySelector('.sl-status');
    var strip = box.querySelector('.sl-steps');
    var seen = null, idle = 0, timer = null, expand = [];

    function close() { panel.hidden = true; }
    panel.querySelector('.sl-close').addEventListener('click', close);
    document.addEventListener('keydown', function (event) { if (event.key === 'Escape') { close(); } });

    function show(group) {
      box.querySelectorAll('g.sl-selected').forEach(function (g) { g.classList.remove('sl-selected'); });
      group.classList.add('sl-selected');
      var title = group.querySelector('title');
      var head = title ? title.textContent.split('\n')[0] : '';
      var data = group.getAttribute('data-summary') || '{}';
      try { data = JSON.stringify(JSON.parse(data), null, 1); } catch (e) { /* shown as it is */ }
      panelText.textContent = head + '\n\n' + data;
      panel.hidden = false;
    }
    function toggleFold(step) {
      var at = expand.indexOf(step);
      if (at === -1) { expand.push(step); } else { expand.splice(at, 1); }
      seen = null;
      poll();
    }
    function bind() {
      box.querySelectorAll('g.sl-arrow').forEach(function (group) {
        group.addEventListener('click', function () { show(group); });
        group.addEventListener('keydown', function (event) { if (event.key === 'Enter') { show(group); } });
      });
      box.querySelectorAll('g.sl-fold').forEach(function (group) {
        var step = group.getAttribute('data-fold');
        group.addEventListener('click', function () { toggleFold(step); });
        group.addEventListener('keydown', function (event) { if (event.key === 'Enter') { toggleFold(step); } });
      });
    }
    function describe(tx) {
      var ids = (tx.transaction_ids || []).join(', ') || tx.id;
      var line = 'Transaction ' + ids + ': ' + tx.outcome;
      if (tx.failure) { line += ' at step ' + tx.failure.step + ' (' + tx.failure.error + ')'; }
      else if (tx.outcome === 'pending' && tx.current_step) { line += ', now at step ' + tx.current_step; }
      status.textContent = line + ', ' + Math.round(tx.duration_ms) + ' ms';
      status.classList.toggle('bad', tx.outcome === 'refused');
      strip.textContent = '';
      (tx.step_states || []).forEach(function (s) {
        var item = document.createElement('li');
        item.className = 'sl-step-state-' + s.state.replace(/ /g, '-');
        item.setAttribute('data-step', s.step);
        item.title = s.name + ' · ' + s.roles + ' · ' + s.state;
        item.appendChild(text('b', String(s.step)));
        item.appendChild(document.createTextNode(' '));
        item.appendChild(text('span', s.name));
        strip.appendChild(item);
      });
    }
    function svgUrl() {
      var url = box.dataset.svg;
      expand.forEach(function (step) { url += (url.indexOf('?') === -1 ? '?' : '&') + 'expand=' + step; });
      return url;
    }
    function schedule(delay) {
      clearTimeout(timer);
      if (idle < 400) { timer = setTimeout(poll, delay || 1500); }
    }
    function poll() {
      fetch(box.dataset.json, { cache: 'no-store' })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (tx) {
          if (!tx) { idle++; schedule(); return; }
          describe(tx);
          var state = tx.arrows.length + ' ' + tx.outcome;
          if (state === seen) {
            idle++;
            if (!FINAL[tx.outcome]) { schedule(); }
            return;
          }
          seen = state; idle = 0;
          return fetch(svgUrl(), { cache: 'no-store' })
            .then(function (r) { return r.text(); })
            .then(function (svg) {
              diagram.innerHTML = svg;
              bind();
              if (!FINAL[tx.outcome]) { schedule(); }
            });
        })
        .catch(function () { idle++; schedule(); });
    }
    // The dashboard: follow each new signing as it arrives (unless the trainer unticks "follow").
    function follow() {
      var table = document.querySelector('table.sl-transactions tbody');
      var toggle = document.querySelector('input.sl-follow');
      fetch(box.dataset.follow, { cache: 'no-store' })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (rows) {
          if (rows && table) { renderRows(table, rows); }
          if (rows && rows.length && (!toggle || toggle.checked) && rows[0].urls.json !== box.dataset.json) {
            box.dataset.json = rows[0].urls.json;
            box.dataset.svg = rows[0].urls.svg;
            box.querySelectorAll('.sl-page-link').forEach(function (a) { a.href = rows[0].urls.page; });
            box.querySelectorAll('.sl-cli').forEach(function (c) { c.textContent = 'signlab trace ' + rows[0].id + ' --format mermaid'; });
            seen = null; idle = 0; expand = [];
            poll();
          }
        })
        .catch(function () { /* try again */ })
        .then(function () { setTimeout(follow, 2000); });
    }
    function renderRows(table, rows) {
      table.textContent = '';
      rows.forEach(function (row) {
        var tr = document.createElement('tr');
        tr.className = row.urls.json === box.dataset.json ? 'sl-current' : '';
        var shown = row.shown || {};
        tr.appendChild(text('td', row.start.replace('T', ' ').replace(/\.\d+Z$/, '')));
        var link = document.createElement('td');
        var a = text('a', (row.transaction_ids || []).join(', ') || row.id.slice(0, 16));
        a.href = row.urls.page;
        link.appendChild(a);
        tr.appendChild(link);
        ['person', 'qualifier', 'format', 'level'].forEach(function (name) { tr.appendChild(text('td', shown[name] || '–')); });
        tr.appendChild(text('td', row.current_step ? String(row.current_step) : '–'));
        tr.appendChild(text('td', Math.round(row.duration_ms) + ' ms'));
        var outcome = row.outcome + (row.failure ? ' (' + row.failure + ')' : '');
        tr.appendChild(text('td', outcome, 'sl-outcome-' + row.outcome));
        table.appendChild(tr);
      });
    }
    bind();
    if (box.dataset.follow) { follow(); }
    poll();
  }
  document.querySelectorAll('.signlab-trace-live').forEach(init);
})();
