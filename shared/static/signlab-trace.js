// The live sequence diagram: polls the transaction's JSON, redraws the server-rendered SVG when
// new arrows arrive, shows an arrow's decoded (redacted) message on click or hover. No CDN.
(function () {
  'use strict';
  function init(box) {
    var diagram = box.querySelector('.sl-diagram');
    var panel = box.querySelector('.sl-panel pre');
    var status = box.querySelector('.sl-status');
    var seen = -1, idle = 0;
    function show(group) {
      box.querySelectorAll('g.sl-selected').forEach(function (g) { g.classList.remove('sl-selected'); });
      group.classList.add('sl-selected');
      var title = group.querySelector('title');
      var head = title ? title.textContent.split('\n')[0] : '';
      var data = group.getAttribute('data-summary') || '{}';
      try { data = JSON.stringify(JSON.parse(data), null, 1); } catch (e) { /* shown as it is */ }
      panel.textContent = head + '\n\n' + data;
    }
    function bind() {
      box.querySelectorAll('g.sl-arrow').forEach(function (group) {
        group.addEventListener('click', function () { show(group); });
        group.addEventListener('keydown', function (event) { if (event.key === 'Enter') { show(group); } });
      });
    }
    function describe(tx) {
      var text = 'Transaction ' + ((tx.transaction_ids || []).join(', ') || tx.id) + ': ' + tx.outcome +
        ', steps ' + tx.steps.join(' ') + ', ' + Math.round(tx.duration_ms) + ' ms';
      if (tx.failure) { text += ' — failed at step ' + tx.failure.step + ': ' + tx.failure.error; }
      status.textContent = text;
      status.classList.toggle('bad', tx.outcome === 'error');
    }
    function schedule() { if (idle < 60) { setTimeout(poll, 1500); } }
    function poll() {
      fetch(box.dataset.json, { cache: 'no-store' })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (tx) {
          if (!tx) { idle++; schedule(); return; }
          describe(tx);
          if (tx.arrows.length === seen) { idle++; schedule(); return; }
          seen = tx.arrows.length; idle = 0;
          return fetch(box.dataset.svg, { cache: 'no-store' })
            .then(function (r) { return r.text(); })
            .then(function (svg) { diagram.innerHTML = svg; bind(); schedule(); });
        })
        .catch(function () { idle++; schedule(); });
    }
    bind();
    poll();
  }
  document.querySelectorAll('.signlab-trace-live').forEach(init);
})();
